"""Metric definitions against hand-computed examples (rs_metrics 0.6.0 semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrs_tui.evaluation.metrics import (
    context_metrics,
    hit_rate,
    mean_confidence_interval,
    metric_names,
    ndcg,
    rank_scores,
    recall,
    summarize,
)
from recommenders.base import Recommender

D2, D3, D4, D6 = 1.0, 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(6)  # discounts of ranks 1, 2, 3, 5


def test_hits_at_two_cutoffs_hand_computed():
    ranked, relevant = [5, 3, 9, 1, 7], {3, 7, 42}
    # K=3: one hit (item 3, rank 2); three relevant items, ideal list has 3 hits.
    assert hit_rate(ranked, relevant, 3) == 1.0
    assert recall(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert ndcg(ranked, relevant, 3) == pytest.approx(D3 / (D2 + D3 + D4))
    # K=5: item 7 at rank 5 joins.
    assert recall(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert ndcg(ranked, relevant, 5) == pytest.approx((D3 + D6) / (D2 + D3 + D4))
    # K=1: a miss.
    assert (hit_rate(ranked, relevant, 1), recall(ranked, relevant, 1), ndcg(ranked, relevant, 1)) == (0, 0, 0)


def test_fewer_relevant_items_than_k_normalises_by_what_is_possible():
    # One relevant item, found at rank 2: recall is complete, NDCG is the rank-2 discount.
    assert recall([2, 1], {1}, 50) == 1.0
    assert ndcg([2, 1], {1}, 50) == pytest.approx(D3)
    assert ndcg([1, 2], {1}, 50) == 1.0


def test_more_relevant_items_than_k_recall_divides_by_all_of_them():
    # rs_metrics: recall = found / |relevant| even when |relevant| > K; NDCG's ideal has K hits.
    ranked, relevant = [1, 2], {1, 2, 3, 4}
    assert recall(ranked, relevant, 2) == 0.5
    assert ndcg(ranked, relevant, 2) == pytest.approx(1.0)


def test_empty_ranking_scores_zero_and_empty_relevant_set_is_not_a_test_context():
    assert context_metrics([], {1}, [10]) == {"HitRate@10": 0.0, "Recall@10": 0.0, "NDCG@10": 0.0}
    with pytest.raises(ValueError):
        recall([1, 2], set(), 10)
    with pytest.raises(ValueError):
        ndcg([1, 2], [], 10)
    # No test context at all: no mean, no interval; the table shows a dash.
    summary = summarize([], metric_names([50]))["NDCG@50"]
    assert (summary.mean, summary.half_width, summary.n) == (None, None, 0)
    assert summary.format() == "–"


def test_duplicate_relevant_items_count_once():
    assert recall([3], [3, 3, 7], 5) == 0.5
    assert ndcg([3, 7], [3, 3, 7], 5) == pytest.approx(1.0)


def test_ties_are_broken_by_lower_item_index_before_cutting_at_k():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5], np.float32)
    candidates = np.arange(5)
    assert rank_scores(scores, candidates, 3).tolist() == [1, 0, 2]
    # The recommenders' own ranking uses the same rule, so metrics see the same list.
    items, _ = Recommender._top_k(scores, np.ones(5, bool), 3)
    assert items.tolist() == [1, 0, 2]
    # Item 2 ties with item 0 for rank 2 and loses: a miss at K=2, a rank-3 hit at K=3.
    ranked = rank_scores(scores, candidates, 5).tolist()
    assert hit_rate(ranked, {2}, 2) == 0.0
    assert ndcg(ranked, {2}, 3) == pytest.approx(D4)


def test_context_metrics_names_every_metric_at_every_k():
    values = context_metrics([5, 3, 9], {3}, [1, 3])
    assert sorted(values) == sorted(metric_names([1, 3]))
    assert values["HitRate@1"] == 0.0 and values["HitRate@3"] == 1.0


def test_confidence_interval_is_the_student_t_half_width():
    # mean 0.75, sample sd 0.5, sem 0.25, t(0.975, 3) = 3.18245 -> half-width 0.79561
    summary = mean_confidence_interval([1, 0, 1, 1])
    assert summary.mean == pytest.approx(0.75)
    assert summary.half_width == pytest.approx(0.25 * 3.1824463052837078)
    assert summary.n == 4
    assert summary.format() == "0.750 ± 0.796"
    assert mean_confidence_interval([1, 1, 1]).half_width == 0.0


def test_confidence_interval_of_a_single_context_has_no_width():
    summary = mean_confidence_interval([0.4])
    assert summary.mean == pytest.approx(0.4) and summary.half_width is None
    assert summary.format() == "0.400"


def test_interval_narrows_as_contexts_grow():
    rng = np.random.default_rng(0)
    small = mean_confidence_interval(rng.random(10)).half_width
    large = mean_confidence_interval(rng.random(1000)).half_width
    assert large < small / 5
