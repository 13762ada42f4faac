"""KNN with paper semantics: profile = mean of raw vectors played + seed, cosine ranking."""

from __future__ import annotations

import numpy as np

from recommenders import Interactions, Query, create
from recommenders.knn import KNNRecommender


def planted(n_clusters=5, per_cluster=20, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_clusters, dim)) * 4
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    vectors = (centres[labels] + rng.normal(0, 1, (len(labels), dim))).astype(np.float32)
    return vectors, labels


def no_history(n_items: int) -> Interactions:
    return Interactions([], [], [], n_contexts=0, n_items=n_items)


def test_the_nearest_track_by_construction_comes_first():
    vectors, _ = planted()
    # Plant a near-duplicate of item 7 at index 63 (another cluster's slot).
    vectors[63] = vectors[7] + 0.001
    knn = KNNRecommender().fit(no_history(len(vectors)), vectors)
    items, scores = knn.recommend(Query(seed=7, exclude={7}), k=5)
    assert items[0] == 63
    assert scores[0] > 0.999 and np.all(np.diff(scores) <= 0)


def test_profile_is_the_mean_of_raw_vectors_then_cosine():
    vectors = np.array([[10, 0], [0, 1], [1, 1], [1, 0.1]], dtype=np.float32)
    knn = KNNRecommender().fit(no_history(4), vectors)
    # mean of raw [10,0] and [0,1] = [5, .5]: closest in angle is [1, .1], not [1, 1].
    items, _ = knn.recommend(Query(history=[0, 1], exclude={0, 1}), k=1)
    assert items.tolist() == [3]
    expected = (
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True) @ (np.array([5, 0.5]) / np.linalg.norm([5, 0.5]))
    )
    np.testing.assert_allclose(knn.score(Query(history=[0, 1])), expected, rtol=1e-6)


def test_cluster_mates_rank_first_and_exclusions_hold():
    vectors, labels = planted()
    knn = KNNRecommender().fit(no_history(len(vectors)), vectors)
    played = [0, 1, 2]
    items, _ = knn.recommend(Query(history=played, exclude=set(played)), k=17)
    assert not set(items) & set(played)
    assert (labels[items] == 0).mean() > 0.9


def test_pools_restrict_to_hot_or_cold_items():
    vectors, _ = planted()
    history = Interactions([0, 0, 1], [3, 4, 50], [1, 2, 3], n_contexts=2, n_items=len(vectors))
    knn = KNNRecommender().fit(history, vectors)
    hot, _ = knn.recommend(Query(seed=3, pool="hot"), k=10)
    cold, _ = knn.recommend(Query(seed=3, pool="cold"), k=10)
    assert set(hot) <= {3, 4, 50}
    assert not set(cold) & {3, 4, 50} and len(cold) == 10
    # A research-style query: the context's own history is the profile.
    by_context, _ = knn.recommend(Query(context=0, exclude={3, 4}), k=3)
    assert set(by_context) <= set(range(20))


def test_faiss_path_matches_dense_scores():
    vectors, _ = planted(dim=32, per_cluster=50)
    knn = KNNRecommender().fit(no_history(len(vectors)), vectors)
    query = Query(history=[5, 80], exclude={5, 80, 81})
    items, scores = knn.recommend(query, k=20)
    dense = knn.score(query)
    dense[[5, 80, 81]] = -np.inf
    np.testing.assert_array_equal(items, np.argsort(-dense, kind="stable")[:20])
    np.testing.assert_allclose(scores, dense[items], rtol=1e-5)


def test_zscore_option_changes_what_dominates():
    rng = np.random.default_rng(1)
    # dimension 0 is huge and uninformative; dimensions 1-3 carry the two-cluster signal
    signal = np.repeat([[1, 1, 1], [-1, -1, -1]], 20, axis=0) + rng.normal(0, 0.1, (40, 3))
    vectors = np.column_stack([rng.normal(0, 100, 40), signal]).astype(np.float32)
    plain = KNNRecommender().fit(no_history(40), vectors)
    zscored = KNNRecommender(zscore=True).fit(no_history(40), vectors)
    query = Query(seed=0, exclude={0})
    z_items, _ = zscored.recommend(query, k=10)
    assert (z_items < 20).all()
    p_items, _ = plain.recommend(query, k=10)
    assert (p_items >= 20).any()


def test_save_and_load_give_identical_rankings(tmp_path):
    vectors, _ = planted()
    history = Interactions([0, 0, 1], [3, 4, 50], [1, 2, 3], n_contexts=2, n_items=len(vectors))
    knn = create("knn", zscore=True).fit(history, vectors)
    knn.save(tmp_path / "knn")
    from recommenders import load_saved

    again = load_saved(tmp_path / "knn")
    for query in (Query(seed=9), Query(context=1, pool="cold"), Query(history=[1, 2], exclude={1, 2})):
        a, sa = knn.recommend(query, 10)
        b, sb = again.recommend(query, 10)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb)
