"""The paired test and the proportion interval against hand-computed values and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from mrs_tui.evaluation.stats import paired_test, proportion_ci, verdict


def test_wilson_interval_matches_hand_computation():
    # 14 of 20: centre (0.7 + z²/40) / (1 + z²/20), half-width as Wilson (1927).
    result = proportion_ci(14, 20)
    assert result.share == pytest.approx(0.7)
    assert result.low == pytest.approx(0.4810, abs=1e-4)
    assert result.high == pytest.approx(0.8545, abs=1e-4)


def test_wilson_interval_edges():
    assert (proportion_ci(0, 0).low, proportion_ci(0, 0).high) == (0.0, 1.0)
    assert proportion_ci(0, 10).low == pytest.approx(0.0, abs=1e-12)
    assert proportion_ci(10, 10).high == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        proportion_ci(5, 3)


def test_clear_difference_is_significant_and_named():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 0.5, 60)
    a = b + 0.2 + rng.normal(0, 0.05, 60)
    result = paired_test(a, b, seed=3)
    assert result.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert result.ci_low > 0.1 and result.ci_high < 0.3
    assert result.p_wilcoxon == pytest.approx(wilcoxon(a - b).pvalue)
    assert result.significant
    assert verdict(result, "musicnn", "mfcc").startswith("musicnn better than mfcc (p=")
    assert verdict(paired_test(b, a, seed=3), "mfcc", "musicnn").startswith("musicnn better than mfcc")


def test_noise_only_gives_no_clear_difference():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, 40)
    b = a + rng.normal(0, 0.2, 40) * rng.choice([-1, 1], 40)
    result = paired_test(a, b, seed=0)
    assert not result.significant
    assert verdict(result, "a", "b").startswith("no clear difference between a and b")


def test_pairing_matters():
    # Same two samples, but b = a + small constant: unpaired spread is huge, the paired one is not.
    a = np.linspace(0, 1, 30)
    b = a - 0.01
    b[::2] -= 0.002
    assert paired_test(a, b).significant


def test_identical_scores_have_no_difference():
    a = np.array([0.0, 1.0, 0.5])
    result = paired_test(a, a.copy())
    assert result.mean_diff == 0.0 and result.p_wilcoxon is None and not result.significant


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        paired_test([1.0, 2.0], [1.0])
