"""The contract every registered recommender keeps, run over `recommenders.REGISTRY` as it is.

A new entry in the registry is tested here without being listed anywhere. The data is a
small planted structure: items fall into clusters whose audio vectors carry the cluster
signal, item popularity within a cluster is skewed, and each context listens inside one
cluster. Then:

- hot: a test context's later items are hidden from training; they must be ranked clearly
  better than by `random`, both when the query names the training context (research data)
  and when it only carries the played items (the app's session);
- cold: some items never occur in training; a context's cold items of its cluster must be
  found through their audio (for recommenders that use audio);
- items added after training (`extend_items`) are cold and found the same way;
- pools and exclusions hold, fitting is deterministic under a seed, save → load gives
  identical rankings, and cancelling stops training.

Each recommender trains with its `quick_params` so the whole suite stays fast.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

import recommenders
from recommenders import Cancelled, Interactions, Query, Recommender

NAMES = sorted(recommenders.REGISTRY)
HOT_K = 10
COLD_K = 5


@dataclass
class Planted:
    interactions: Interactions  # training rows only
    vectors: np.ndarray  # audio vectors of the whole catalogue (hot and cold)
    cluster: np.ndarray  # cluster of every item
    cold: np.ndarray  # items that never occur in training
    test_contexts: list[int]
    known: dict[int, np.ndarray]  # test context -> its training items
    hidden: dict[int, np.ndarray]  # test context -> its later, hidden items
    context_cluster: np.ndarray
    centroids: np.ndarray
    noise: float


def planted_dataset(
    *,
    n_clusters: int = 4,
    hot_per_cluster: int = 25,
    cold_per_cluster: int = 5,
    contexts_per_cluster: int = 60,
    test_per_cluster: int = 10,
    dim: int = 16,
    noise: float = 0.6,
    seed: int = 7,
) -> Planted:
    rng = np.random.default_rng(seed)
    per_cluster = hot_per_cluster + cold_per_cluster
    n_items = n_clusters * per_cluster
    centroids = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    vectors = (centroids[cluster] + noise * rng.normal(size=(n_items, dim))).astype(np.float32)
    cold = np.concatenate([c * per_cluster + hot_per_cluster + np.arange(cold_per_cluster) for c in range(n_clusters)])
    # Zipf-like popularity inside each cluster, so that the popularity baseline has a signal too.
    popularity = 1.0 / np.arange(1, hot_per_cluster + 1) ** 1.1
    popularity /= popularity.sum()

    contexts, items, stamps = [], [], []
    known, hidden = {}, {}
    test_contexts: list[int] = []
    context_cluster = []
    clock = 0.0
    for c in range(n_clusters):
        hot_of_cluster = c * per_cluster + rng.permutation(hot_per_cluster)
        for j in range(contexts_per_cluster):
            context = len(context_cluster)
            context_cluster.append(c)
            length = int(rng.integers(10, 15))
            played = rng.choice(hot_of_cluster, size=length, replace=False, p=popularity)
            played = rng.permutation(played)  # listening order is unrelated to popularity rank
            if rng.random() < 0.3:  # an occasional stray track from another cluster
                other = (c + int(rng.integers(1, n_clusters))) % n_clusters
                played = np.append(played, other * per_cluster + int(rng.integers(hot_per_cluster)))
            if j < test_per_cluster:
                test_contexts.append(context)
                known[context], hidden[context] = played[:8], played[8:]
                played = played[:8]
            for item in played:
                clock += 1.0
                contexts.append(context)
                items.append(int(item))
                stamps.append(clock)
    interactions = Interactions(
        np.array(contexts), np.array(items), np.array(stamps), n_contexts=len(context_cluster), n_items=n_items
    )
    assert not interactions.hot_mask()[cold].any()
    return Planted(
        interactions,
        vectors,
        cluster,
        cold,
        test_contexts,
        known,
        hidden,
        np.array(context_cluster),
        centroids,
        noise,
    )


@cache
def data() -> Planted:
    return planted_dataset()


@cache
def fitted(name: str, seed: int = 0) -> Recommender:
    spec = recommenders.REGISTRY[name]
    cls = recommenders.recommender_class(name)
    model = recommenders.create(name, seed=seed, **cls.quick_params)
    calls: list[tuple[float, float, str]] = []
    model.fit(data().interactions, data().vectors, progress=lambda *a: calls.append(a))
    assert calls, f"{name}: fit reported no progress"
    assert calls[-1][0] == calls[-1][1], f"{name}: the last progress report is not the end"
    assert spec.name == model.name
    return model


def hot_recall(model: Recommender, *, by_context: bool) -> float:
    d = data()
    recalls = []
    for c in d.test_contexts:
        if by_context:
            query = Query(context=c, pool="hot", exclude=d.known[c])
        else:
            query = Query(history=d.known[c], pool="hot", exclude=d.known[c])
        items, _ = model.recommend(query, HOT_K)
        recalls.append(len(set(items.tolist()) & set(d.hidden[c].tolist())) / len(d.hidden[c]))
    return float(np.mean(recalls))


def cold_precision(model: Recommender, *, by_context: bool) -> float:
    d = data()
    precisions = []
    for c in d.test_contexts:
        query = Query(context=c, pool="cold") if by_context else Query(history=d.known[c], pool="cold")
        items, _ = model.recommend(query, COLD_K)
        relevant = d.cold[d.cluster[d.cold] == d.context_cluster[c]]
        precisions.append(len(set(items.tolist()) & set(relevant.tolist())) / COLD_K)
    return float(np.mean(precisions))


def test_the_registry_holds_every_recommender_of_the_paper_and_the_baselines():
    assert {"knn", "shallow", "contrastive", "hybrid", "bert4rec", "popular", "random"} <= set(NAMES)
    assert recommenders.REGISTRY["random"].baseline


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("by_context", [True, False], ids=["context", "session"])
def test_hot_recommendations_beat_random(name, by_context):
    if name == "random":
        pytest.skip("random is the floor itself")
    model_recall = hot_recall(fitted(name), by_context=by_context)
    random_recall = hot_recall(fitted("random"), by_context=by_context)
    assert model_recall >= 1.5 * random_recall and model_recall - random_recall >= 0.08, (
        f"{name}: hot recall@{HOT_K} {model_recall:.3f} vs random {random_recall:.3f}"
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("by_context", [True, False], ids=["context", "session"])
def test_cold_items_are_found_through_audio(name, by_context):
    model = fitted(name)
    if not (model.uses_audio and model.scores_cold_items):
        pytest.skip(f"{name} has no audio path to cold items")
    model_precision = cold_precision(model, by_context=by_context)
    random_precision = cold_precision(fitted("random"), by_context=by_context)
    assert model_precision >= 0.6 and model_precision - random_precision >= 0.3, (
        f"{name}: cold precision@{COLD_K} {model_precision:.3f} vs random {random_precision:.3f}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_pools_and_exclusions_hold(name):
    model = fitted(name)
    d = data()
    hot = model.hot_mask
    assert hot is not None and len(hot) == model.n_items == len(d.vectors)
    assert not hot[d.cold].any()
    c = d.test_contexts[0]
    excluded = set(d.known[c].tolist()) | {int(d.cold[0]), int(d.cold[1])}
    for query in (
        Query(context=c, exclude=excluded),
        Query(history=d.known[c], seed=int(d.known[c][-1]), exclude=excluded),
    ):
        for pool in ("all", "hot", "cold"):
            query.pool = pool
            items, scores = model.recommend(query, model.n_items)
            assert not excluded & set(items.tolist()), f"{name}: an excluded item came back ({pool})"
            assert len(set(items.tolist())) == len(items)
            assert np.all(np.diff(scores) <= 0), f"{name}: not sorted best first"
            if pool == "hot":
                assert hot[items].all() and len(items) == int(hot.sum()) - len(excluded & set(np.flatnonzero(hot)))
            if pool == "cold":
                assert not hot[items].any() and len(items) == int((~hot).sum()) - 2
        scores = model.score(query)
        assert scores.shape == (model.n_items,) and scores.dtype == np.float32 and np.isfinite(scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_batch_and_single_queries_agree(name):
    d = data()
    model = fitted(name)
    queries = [Query(context=c, exclude=d.known[c]) for c in d.test_contexts[:6]]
    queries += [Query(history=d.known[c], pool="cold") for c in d.test_contexts[6:12]] + [Query()]
    for query, (items, scores) in zip(queries, model.recommend_batch(queries, 10), strict=True):
        single_items, single_scores = model.recommend(query, 10)
        np.testing.assert_array_equal(items, single_items)
        np.testing.assert_allclose(scores, single_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_query_still_gets_an_answer(name):
    model = fitted(name)
    items, _ = model.recommend(Query(), 5)
    assert len(items) == 5
    out_of_range = Query(context=10_000, history=[int(data().known[data().test_contexts[0]][0])])
    assert len(model.recommend(out_of_range, 5)[0]) == 5


@pytest.mark.parametrize("name", NAMES)
def test_fitting_is_deterministic_under_a_seed(name):
    # Bit-identical reruns are promised on the CPU; on CUDA, atomic adds in embedding
    # gradients make reruns equal only up to float rounding, so both fits here use the CPU.
    d = data()
    params = dict(recommenders.recommender_class(name).quick_params)
    if recommenders.REGISTRY[name].trainable:
        params["device"] = "cpu"
    first = recommenders.create(name, seed=0, **params).fit(d.interactions, d.vectors)
    again = recommenders.create(name, seed=0, **params).fit(d.interactions, d.vectors)
    for c in d.test_contexts[::3]:
        for query in (Query(context=c, exclude=d.known[c]), Query(history=d.known[c], pool="cold")):
            a_items, a_scores = first.recommend(query, 20)
            b_items, b_scores = again.recommend(query, 20)
            np.testing.assert_array_equal(a_items, b_items)
            np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_rankings(name, tmp_path):
    d = data()
    model = fitted(name)
    model.save(tmp_path / name)
    loaded = recommenders.load_saved(tmp_path / name)
    assert type(loaded) is type(model) and loaded.n_items == model.n_items
    np.testing.assert_array_equal(loaded.hot_mask, model.hot_mask)
    for c in d.test_contexts[::2]:
        for query in (
            Query(context=c, exclude=d.known[c]),
            Query(history=d.known[c], seed=int(d.known[c][0]), exclude=d.known[c]),
            Query(context=c, pool="cold"),
        ):
            a_items, a_scores = model.recommend(query, 30)
            b_items, b_scores = loaded.recommend(query, 30)
            np.testing.assert_array_equal(a_items, b_items)
            np.testing.assert_array_equal(a_scores, b_scores)


@pytest.mark.parametrize("name", NAMES)
def test_items_added_after_training_are_cold_and_found_through_audio(name, tmp_path):
    d = data()
    model = fitted(name)
    model.save(tmp_path / name)
    grown = recommenders.load_saved(tmp_path / name)  # leave the shared fitted model untouched
    rng = np.random.default_rng(11)
    target = 2
    new_cluster = np.array([target] * 4 + [0, 1, 3] * 2)
    new_vectors = d.centroids[new_cluster] + d.noise * rng.normal(size=(len(new_cluster), d.vectors.shape[1]))
    before = grown.n_items
    grown.extend_items(new_vectors.astype(np.float32))
    assert grown.n_items == before + len(new_cluster)
    assert not grown.hot_mask[before:].any()
    new_items = np.arange(before, grown.n_items)
    c = next(c for c in d.test_contexts if d.context_cluster[c] == target)
    items, _ = grown.recommend(Query(context=c, pool="cold", exclude=d.cold), 4)
    assert set(items.tolist()) <= set(new_items.tolist())
    for query in (Query(context=c), Query(history=d.known[c])):
        assert grown.score(query).shape == (grown.n_items,)
    if grown.uses_audio and grown.scores_cold_items:
        found = len(set(items.tolist()) & set(new_items[new_cluster == target].tolist()))
        assert found >= 3, f"{name}: found {found}/4 new items of the session's cluster"
    # The old items keep their indices and scores.
    query = Query(history=d.known[c])
    np.testing.assert_allclose(grown.score(query)[:before], model.score(query), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_cancel_stops_training(name):
    d = data()
    spec = recommenders.REGISTRY[name]
    cls = recommenders.recommender_class(name)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        recommenders.create(name, **cls.quick_params).fit(d.interactions, d.vectors, cancel=cancel)
    if not spec.trainable:
        return
    cancel = threading.Event()
    reports: list[float] = []

    def progress(done: float, total: float, message: str) -> None:
        reports.append(done / total)
        cancel.set()

    model = recommenders.create(name, **{**cls.quick_params, "epochs": 1000})
    with pytest.raises(Cancelled):
        model.fit(d.interactions, d.vectors, progress=progress, cancel=cancel)
    assert len(reports) == 1 and reports[0] < 0.5, f"{name}: training went on after cancel ({reports})"
