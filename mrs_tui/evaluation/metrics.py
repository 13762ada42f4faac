"""Ranking metrics, exactly as the paper computed them with `rs_metrics` (0.6.0).

For one context with a ranked list ``ranked`` (best first, cut to K) and a set of relevant
items ``relevant``:

- **HitRate@K** = 1 if any relevant item is in the top K, else 0.
- **Recall@K** = (relevant items in the top K) / (number of relevant items) — divided by *all*
  relevant items, not by min(|relevant|, K): with more than K relevant items a perfect list
  scores below 1, as in `rs_metrics.recall`.
- **NDCG@K** = DCG / IDCG with binary gains, DCG = sum over hit positions p (0-based) of
  1 / log2(p + 2), and IDCG the DCG of min(|relevant|, K) hits at the top.

Edge cases, decided here and tested:

- A context whose relevant set is empty is not a test context: it is left out of every mean
  (`rs_metrics` iterates over the users of the *test* frame, so such users never appear).
- A context with an empty ranking (no candidate left) scores 0 on every metric.
- Relevant items are a set: duplicates in the input count once (the paper's split already
  keeps one row per (user, track) pair).
- Ties in the scores are broken at random by the recommenders (`Recommender._top_k`, with a
  generator seeded by the model's seed and the query, so a rerun gives the same lists): a model
  that cannot tell candidates apart — `popular` on cold items, which all have count 0 — then
  scores what chance scores, never what the catalogue order happens to give. Without a
  generator `_top_k` breaks ties by the lower item index; `rank_scores` is the reference
  implementation of that order.

The summary of a metric over contexts is the mean and the half-width of its 95 % Student-t
confidence interval, ``sem * t.ppf(0.975, n - 1)`` with the sample standard deviation
(ddof = 1), as the paper's `mean_confidence_interval`. With one context the half-width is
undefined and reported as ``None``; with none the mean is ``None`` too.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("HitRate", "Recall", "NDCG")


def _discount(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)


def hit_rate(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    top = list(ranked)[:k]
    rel = set(relevant)
    return float(any(item in rel for item in top))


def recall(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    rel = set(relevant)
    if not rel:
        raise ValueError("recall is undefined without relevant items")
    top = set(list(ranked)[:k])
    return len(rel & top) / len(rel)


def ndcg(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    rel = set(relevant)
    if not rel:
        raise ValueError("NDCG is undefined without relevant items")
    top = list(ranked)[:k]
    gains = np.array([item in rel for item in top], dtype=np.float64)
    dcg = float((gains * _discount(len(top))).sum()) if len(top) else 0.0
    ideal = float(_discount(min(len(rel), k)).sum())
    return dcg / ideal


def context_metrics(ranked: Sequence[int], relevant: Collection[int], ks: Iterable[int]) -> dict[str, float]:
    """Every metric at every K for one context: ``{"HitRate@50": 1.0, ...}``."""
    out = {}
    for k in ks:
        out[f"HitRate@{k}"] = hit_rate(ranked, relevant, k)
        out[f"Recall@{k}"] = recall(ranked, relevant, k)
        out[f"NDCG@{k}"] = ndcg(ranked, relevant, k)
    return out


def metric_names(ks: Iterable[int]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in METRICS]


def rank_scores(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Top-k candidate indices by score, ties broken by the lower index (the recommenders' order)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    order = np.lexsort((candidates, -np.asarray(scores, dtype=np.float64)[candidates]))
    return candidates[order[:k]]


@dataclass(frozen=True)
class Summary:
    """Mean over contexts with its 95 % confidence half-width."""

    mean: float | None
    half_width: float | None
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "half_width": self.half_width, "n": self.n}

    def format(self, digits: int = 3) -> str:
        if self.mean is None:
            return "–"
        if self.half_width is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean and Student-t half-width, as the paper's `utils.mean_confidence_interval`."""
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    n = len(a)
    if n == 0:
        return Summary(None, None, 0)
    mean = float(a.mean())
    if n == 1:
        return Summary(mean, None, 1)
    sem = float(a.std(ddof=1)) / math.sqrt(n)
    half = sem * float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    return Summary(mean, half, n)


def summarize(per_context: Sequence[dict[str, float]], names: Sequence[str]) -> dict[str, Summary]:
    return {name: mean_confidence_interval([row[name] for row in per_context]) for name in names}
