"""Is a difference real? Paired tests over the same test contexts, and a CI for a proportion.

Two cells of an evaluation (two backends under one recommender, or two recommenders on one
backend) are scored on the *same* test contexts, so their per-context metrics are paired.
`paired_test` compares them with a paired bootstrap of the mean difference (its CI and a
two-sided p-value) and, beside it, the Wilcoxon signed-rank test from scipy; `verdict` turns
the result into the sentence the app and the CLI show. `proportion_ci` is the Wilson score
interval used for blind A/B tallies ("musicnn preferred 14 of 20, 95 % CI 0.48–0.86").

No torch, no faiss: this imports numpy and, inside the functions, scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
ALPHA = 0.05


@dataclass(frozen=True)
class PairedResult:
    """A minus B over the same contexts: mean difference, its bootstrap CI, and two p-values."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    p_wilcoxon: float | None  # None when every difference is zero (the test is undefined)

    @property
    def significant(self) -> bool:
        return self.n >= 2 and self.p_bootstrap < ALPHA and (self.p_wilcoxon is None or self.p_wilcoxon < ALPHA)

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "mean_diff": self.mean_diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_bootstrap": self.p_bootstrap,
            "p_wilcoxon": self.p_wilcoxon,
            "significant": self.significant,
        }


def paired_test(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedResult:
    """Compare per-context scores ``a[i]`` and ``b[i]`` of the same context ``i``.

    The bootstrap resamples contexts with replacement (the pairing is kept); its p-value is
    the two-sided share of resampled mean differences on the other side of zero, computed on
    the differences centred at zero (the usual shift method), with the +1 correction so it is
    never exactly 0.
    """
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"paired scores need two 1-d arrays of the same length, got {a_arr.shape} and {b_arr.shape}")
    n = int(a_arr.size)
    if n == 0:
        raise ValueError("no paired contexts to compare")
    diff = a_arr - b_arr
    observed = float(diff.mean())
    if n == 1 or not np.any(diff != diff[0]):
        # No spread: every resample gives the same mean; nothing can be said beyond the sign.
        p = 1.0 if observed == 0.0 or n == 1 else 1.0 / (n_resamples + 1)
        return PairedResult(
            n, float(a_arr.mean()), float(b_arr.mean()), observed, observed, observed, p, _wilcoxon(diff)
        )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_resamples, n))
    means = diff[picks].mean(axis=1)
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    centred = means - observed
    extreme = int(np.count_nonzero(np.abs(centred) >= abs(observed) - 1e-15))
    p_boot = (extreme + 1) / (n_resamples + 1)
    return PairedResult(
        n,
        float(a_arr.mean()),
        float(b_arr.mean()),
        observed,
        float(low),
        float(high),
        float(min(1.0, p_boot)),
        _wilcoxon(diff),
    )


def _wilcoxon(diff: np.ndarray) -> float | None:
    if not np.any(diff != 0):
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def verdict(result: PairedResult, name_a: str, name_b: str) -> str:
    """ "A better than B (p=0.01)", or "no clear difference between A and B (p=0.40)"."""
    p = result.p_bootstrap if result.p_wilcoxon is None else max(result.p_bootstrap, result.p_wilcoxon)
    if not result.significant:
        return f"no clear difference between {name_a} and {name_b} (p={_format_p(p)}, n={result.n})"
    better, worse = (name_a, name_b) if result.mean_diff > 0 else (name_b, name_a)
    return f"{better} better than {worse} (p={_format_p(p)}, n={result.n})"


def _format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 0.1 else f"{p:.2f}"


@dataclass(frozen=True)
class Proportion:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def share(self) -> float | None:
        return self.successes / self.trials if self.trials else None


def proportion_ci(successes: int, trials: int, *, confidence: float = 1 - ALPHA) -> Proportion:
    """Wilson score interval for ``successes`` of ``trials`` (0–1 with no trials)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return Proportion(0, 0, 0.0, 1.0)
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - confidence) / 2))
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return Proportion(successes, trials, max(0.0, centre - half), min(1.0, centre + half))
