"""Is a reduced precision (int8, bf16) of a backend good enough on real audio? Measured, not assumed.

The same excerpts are embedded at fp32 and at the precision under test; the check passes when
every excerpt's vector stays within cosine `MIN_COSINE` of its fp32 vector and at least
`MIN_SAME_NEIGHBOURS` of the excerpts keep the same top-`k` cosine neighbours (as a set: the
order inside the top k may differ). The neighbours are what a user notices: they are the
suggestions.

A handful of files makes a weak neighbour test (with 8 tracks every track's top 10 is all the
others), so each file is cut into consecutive excerpts of `excerpt_seconds`, each a "track"
of its own; the report says when there are still too few for the neighbour test to mean
anything (`neighbours_meaningful`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrs_tui.audio import AUDIO_EXTENSIONS, decode_excerpt
from mrs_tui.errors import AudioDecodeError, UserError

MIN_COSINE = 0.999
MIN_SAME_NEIGHBOURS = 0.9
DEFAULT_K = 10
DEFAULT_EXCERPT_SECONDS = 5.0
MAX_SECONDS_PER_FILE = 60.0  # a long file adds excerpts of one recording, not diversity


@dataclass(frozen=True)
class PrecisionFidelity:
    backend: str
    precision: str
    reference_version: str
    version: str
    names: list[str]  # "file.flac@10s": one per excerpt
    cosines: np.ndarray  # per excerpt, candidate vs fp32
    same_neighbours: np.ndarray  # per excerpt: the same top-k set at both precisions
    k: int  # neighbours compared per excerpt (the asked k, capped at excerpts - 1)
    reference_seconds: float  # embedding time of all excerpts at fp32
    candidate_seconds: float

    @property
    def min_cosine(self) -> float:
        return float(self.cosines.min()) if len(self.cosines) else float("nan")

    @property
    def same_neighbours_share(self) -> float:
        return float(self.same_neighbours.mean()) if len(self.same_neighbours) else float("nan")

    @property
    def neighbours_meaningful(self) -> bool:
        """With k >= excerpts - 1 every excerpt's neighbours are all the others: the test says nothing."""
        return len(self.names) - 1 > self.k

    @property
    def passed(self) -> bool:
        return (
            self.neighbours_meaningful
            and self.min_cosine >= MIN_COSINE
            and self.same_neighbours_share >= MIN_SAME_NEIGHBOURS
        )

    @property
    def speedup(self) -> float:
        return self.reference_seconds / self.candidate_seconds if self.candidate_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "reference_version": self.reference_version,
            "version": self.version,
            "excerpts": len(self.names),
            "k": self.k,
            "min_cosine": self.min_cosine,
            "mean_cosine": float(self.cosines.mean()) if len(self.cosines) else None,
            "same_neighbours_share": self.same_neighbours_share,
            "neighbours_meaningful": self.neighbours_meaningful,
            "passed": self.passed,
            "reference_seconds": self.reference_seconds,
            "candidate_seconds": self.candidate_seconds,
            "speedup": self.speedup,
            "per_excerpt": [
                {"excerpt": n, "cosine": float(c), "same_neighbours": bool(s)}
                for n, c, s in zip(self.names, self.cosines, self.same_neighbours, strict=True)
            ],
        }

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{self.backend} precision={self.precision} vs fp32 on {len(self.names)} excerpts: {verdict}",
            f"  cosine to fp32: min {self.min_cosine:.5f}, mean {float(self.cosines.mean()):.5f}"
            f" (needs >= {MIN_COSINE} for every excerpt)",
            f"  same top-{self.k} neighbours: {self.same_neighbours_share:.0%} of excerpts"
            f" (needs >= {MIN_SAME_NEIGHBOURS:.0%})",
            f"  time: fp32 {self.reference_seconds:.1f} s, {self.precision} {self.candidate_seconds:.1f} s"
            f" ({self.speedup:.2f}x)",
            f"  vectors are stored as version {self.version} (fp32: {self.reference_version})",
        ]
        if not self.neighbours_meaningful:
            lines.append(
                f"  too few excerpts for a top-{self.k} test: give more or longer files, or a shorter --excerpt-seconds"
            )
        worst = np.argsort(self.cosines)[:3]
        lines += [f"  lowest: {self.names[i]} cosine {self.cosines[i]:.5f}" for i in worst]
        return "\n".join(lines)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (0 where either is all zeros)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def top_neighbours(vectors: np.ndarray, k: int) -> list[frozenset[int]]:
    """Each row's `k` nearest other rows by cosine (itself excluded)."""
    v = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return [frozenset(row.tolist()) for row in order]


def compare(reference: np.ndarray, candidate: np.ndarray, k: int = DEFAULT_K) -> tuple[np.ndarray, np.ndarray, int]:
    """(cosine per row, same top-k neighbours per row, the k used) of two embeddings of the same items."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    k = max(0, min(k, len(reference) - 1))
    same = np.array(
        [a == b for a, b in zip(top_neighbours(reference, k), top_neighbours(candidate, k), strict=True)], bool
    )
    return cosine_rows(reference, candidate).astype(np.float32), same, k


def audio_files(folder: Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder", "give a folder of audio files with --clips")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise UserError(f"no audio files in {folder}", "give a folder of audio files with --clips")
    return files


def excerpts(paths: Sequence[Path], sample_rate: int, seconds: float) -> tuple[list[str], list[np.ndarray]]:
    """Consecutive `seconds`-long excerpts of each file at `sample_rate` (a shorter file: one, whole)."""
    from mrs_tui.audio import resample

    names, waves = [], []
    for path in paths:
        try:
            decoded = decode_excerpt(path, 0.0, MAX_SECONDS_PER_FILE)
        except AudioDecodeError as exc:
            raise UserError(f"{path}: {exc}", "remove the file from the folder, or check that it plays") from exc
        samples = resample(decoded.samples, decoded.sample_rate, sample_rate)
        length = int(round(seconds * sample_rate))
        if len(samples) < 2 * length:
            names.append(Path(path).name)
            waves.append(samples)
            continue
        for start in range(0, len(samples) - length + 1, length):
            names.append(f"{Path(path).name}@{start // sample_rate}s")
            waves.append(np.ascontiguousarray(samples[start : start + length]))
    return names, waves


def check_precision(
    backend: str,
    precision: str,
    paths: Sequence[Path],
    *,
    weights: str | Path | None = None,
    options: dict | None = None,
    excerpt_seconds: float = DEFAULT_EXCERPT_SECONDS,
    k: int = DEFAULT_K,
    batch: int = 2,
    progress: Callable[[str], None] | None = None,
) -> PrecisionFidelity:
    """Embed the excerpts of `paths` at fp32 and at `precision` and compare (see the module doc)."""
    from backends import load_backend

    options = {key: value for key, value in (options or {}).items() if key != "precision"}
    # The precision under test first: a precision this machine cannot run fails before any work.
    candidate_backend = load_backend(backend, weights, precision=precision, **options)
    names, waves = excerpts(paths, candidate_backend.sample_rate, excerpt_seconds)
    if len(names) < 2:
        raise UserError("at least two excerpts are needed to compare neighbours", "give more or longer audio files")

    def embed_all(model, label: str) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        rows = [model.embed(waves[first : first + batch]) for first in range(0, len(waves), batch)]
        seconds = time.perf_counter() - started
        if progress:
            progress(f"{label}: {len(waves)} excerpts embedded in {seconds:.1f} s")
        return np.concatenate(rows), seconds

    candidate, candidate_seconds = embed_all(candidate_backend, precision)
    version = candidate_backend.version
    del candidate_backend  # two full-size models need not be resident at once
    reference_backend = load_backend(backend, weights, **options)
    reference, reference_seconds = embed_all(reference_backend, "fp32")
    reference_version = reference_backend.version
    cosines, same, used_k = compare(reference, candidate, k)
    return PrecisionFidelity(
        backend=backend,
        precision=precision,
        reference_version=reference_version,
        version=version,
        names=names,
        cosines=cosines,
        same_neighbours=same,
        k=used_k,
        reference_seconds=reference_seconds,
        candidate_seconds=candidate_seconds,
    )
