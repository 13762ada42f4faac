"""Synthetic embedding vectors drawn to match the statistics of real ones, for scale benchmarks.

Uniform or isotropic random vectors are the worst case for approximate search (every point is
about as far from every other) and say little about a real library, whose embeddings sit on a
low-dimensional, clustered surface. `VectorDistribution.fit` takes real vectors (MusiCNN's
per-patch penultimate layer of real audio, MFCC statistics of real clips) and keeps their mean
and the span of their deviations; `sample` draws style clusters inside that span (centres with
the real between-sample covariance, scaled by `1 - within_share`) and tracks around each centre
(the rest of the covariance), plus a little isotropic noise so no two tracks coincide and the
matrix has full rank. The total covariance of what is drawn equals that of the real samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VectorDistribution:
    mean: np.ndarray  # (dim,)
    basis: np.ndarray  # (rank, dim): z @ basis with z ~ N(0, I) has the real samples' covariance
    jitter: float  # standard deviation of the isotropic noise added per dimension

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, samples: np.ndarray, *, jitter_share: float = 0.05) -> VectorDistribution:
        """Mean and deviation span of `samples` (n, dim); `jitter_share` of their mean variance is noise."""
        samples = np.asarray(samples, np.float64)
        if samples.ndim != 2 or samples.shape[0] < 3:
            raise ValueError("fitting needs at least 3 sample vectors in an (n, dim) matrix")
        mean = samples.mean(axis=0)
        basis = (samples - mean) / np.sqrt(samples.shape[0] - 1)
        jitter = float(np.sqrt(jitter_share * basis.var(axis=0).sum() * samples.shape[0] / samples.shape[1]))
        return cls(mean.astype(np.float32), basis.astype(np.float32), jitter)

    def sample(
        self,
        n: int,
        *,
        n_clusters: int,
        seed: int = 0,
        within_share: float = 0.35,
        chunk: int = 100_000,
        clusters: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, dim) float32, cluster of each vector).

        Clusters are drawn with equal odds unless `clusters` gives each vector's (so that two
        backends' vectors of one library agree on which tracks are alike).
        """
        rng = np.random.default_rng(seed)
        rank = self.basis.shape[0]
        centres = (
            self.mean + (rng.standard_normal((n_clusters, rank), np.float32) * np.sqrt(1 - within_share)) @ self.basis
        )
        if clusters is None:
            clusters = rng.integers(0, n_clusters, n)
        out = np.empty((n, self.dim), np.float32)
        spread = np.float32(np.sqrt(within_share))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = rng.standard_normal((stop - start, rank), np.float32) * spread
            noise = rng.standard_normal((stop - start, self.dim), np.float32) * np.float32(self.jitter)
            out[start:stop] = centres[clusters[start:stop]] + z @ self.basis + noise
        return out, clusters


def nearest_cosines(vectors: np.ndarray, queries: int = 300, seed: int = 0) -> np.ndarray:
    """Cosine of each of `queries` random vectors to its nearest other vector: how clustered a set is."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(vectors), min(queries, len(vectors)), replace=False)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = unit[picks] @ unit.T
    scores[np.arange(len(picks)), picks] = -np.inf
    return scores.max(axis=1)
