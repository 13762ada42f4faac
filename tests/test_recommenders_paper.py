"""Research fidelity of the recommenders: each ``paper_compat`` switch, the ``elsa`` baseline,
random tie-breaking of the baselines, and validation-based checkpoint selection.

Every switch is checked by what it changes in training (which weights move, what is sampled,
what the loss sees), so each test fails when its switch is taken out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recommenders
from recommenders import Interactions, Query
from recommenders.base import Validation
from recommenders.contrastive import adcl_loss, dcl_loss
from recommenders.elsa import NO_SCORE


def clustered(n_clusters=3, items_per_cluster=12, cold_per_cluster=3, contexts_per_cluster=15, per_context=6, seed=0):
    """Contexts listen inside one cluster; the audio vectors carry the cluster (or nothing, `audio=False`)."""
    rng = np.random.default_rng(seed)
    n_hot = n_clusters * items_per_cluster
    n_items = n_hot + n_clusters * cold_per_cluster
    cluster = np.concatenate(
        [np.repeat(np.arange(n_clusters), items_per_cluster), np.repeat(np.arange(n_clusters), cold_per_cluster)]
    )
    rows_c, rows_i = [], []
    for c in range(n_clusters * contexts_per_cluster):
        mine = np.flatnonzero((cluster == c % n_clusters) & (np.arange(n_items) < n_hot))
        for item in rng.choice(mine, per_context, replace=False):
            rows_c.append(c)
            rows_i.append(item)
    n_contexts = n_clusters * contexts_per_cluster
    interactions = Interactions(rows_c, rows_i, np.arange(len(rows_i), dtype=float), n_contexts, n_items)
    centroids = rng.normal(size=(n_clusters, 8)) * 3
    vectors = (centroids[cluster] + rng.normal(size=(n_items, 8))).astype(np.float32)
    return interactions, vectors, cluster


def quick(name, **extra):
    return {**recommenders.recommender_class(name).quick_params, **extra}


# -- shallow ---------------------------------------------------------------------------------------


def test_shallow_paper_compat_trains_the_item_vectors_and_freezes_the_user_side():
    interactions, vectors, _ = clustered()
    compat = recommenders.create("shallow", **quick("shallow", epochs=5, batch_size=32), paper_compat=True)
    compat.fit(interactions, vectors)
    default = recommenders.create("shallow", **quick("shallow", epochs=5, batch_size=32)).fit(interactions, vectors)
    hot = compat.hot_mask

    # paper_compat: raw inputs, item vectors moved, contexts still their mean-of-items start.
    np.testing.assert_array_equal(compat.scaling.mean, 0.0)
    assert not np.allclose(compat.item_inputs[hot], vectors[hot])
    np.testing.assert_array_equal(compat.item_inputs[~hot], vectors[~hot])  # no gradient ever reaches cold rows
    start = np.stack([vectors[np.unique(s)].mean(axis=0) for s in interactions.sequences()])
    np.testing.assert_allclose(compat.context_inputs, start, rtol=1e-6)
    # The default (the paper's text): items frozen at their (standardised) audio, contexts learned.
    np.testing.assert_allclose(default.item_inputs, default.scaling(vectors), rtol=1e-6)
    assert not np.allclose(default.context_inputs, start)


def test_shallow_paper_compat_draws_users_as_negatives(monkeypatch):
    from recommenders import shallow

    interactions, vectors, _ = clustered()
    seen: list[tuple[tuple[int, ...], int]] = []
    original = shallow.ShallowNet.embed_contexts

    def spy(self, contexts):
        seen.append((tuple(contexts.shape), int(contexts.max())))
        return original(self, contexts)

    monkeypatch.setattr(shallow.ShallowNet, "embed_contexts", spy)
    recommenders.create("shallow", paper_compat=True, epochs=1, batch_size=16, negatives=7).fit(interactions, vectors)
    negative_calls = [shape for shape, _ in seen if len(shape) == 2]
    assert negative_calls and all(shape[1] == 7 for shape in negative_calls)  # 7 random users per (item, user) row
    assert max(top for _, top in seen) < interactions.n_contexts
    seen.clear()
    recommenders.create("shallow", epochs=1, batch_size=16, negatives=7, min_steps=0).fit(interactions, vectors)
    assert all(len(shape) == 1 for shape, _ in seen)  # the default samples items: contexts only as positives


def test_paper_compat_stands_for_the_codes_sizes_and_explicit_options_win():
    model = recommenders.create("shallow", paper_compat=True, epochs=3)
    assert (model.batch_size, model.min_steps, model.epochs, model.standardize) == (10_000, 0, 3, False)
    bert = recommenders.create("bert4rec", paper_compat=True)
    assert (bert.dropout, bert.lr, bert.max_len, bert.audio_item_table, bert.cold_negatives) == (
        0.1,
        1e-3,
        300,
        True,
        True,
    )
    contrastive = recommenders.create("contrastive", paper_compat=True)
    assert (contrastive.out_dim, contrastive.elsa_dims, contrastive.elsa_lr, contrastive.loss) == (
        768,
        768,
        0.1,
        "adcl",
    )
    assert recommenders.create("hybrid", paper_compat=True).hidden == 768
    assert recommenders.create("elsa", paper_compat=True).dims == 768
    assert not recommenders.create("knn", paper_compat=True).zscore  # the code's knn is ours


# -- contrastive -----------------------------------------------------------------------------------


def test_adcl_keeps_only_cross_view_negatives():
    rng = np.random.default_rng(0)
    z1 = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32), dim=-1)
    z2 = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32), dim=-1)
    cross = (z1 @ z2.T / 0.1).numpy()
    by_hand = np.mean([-cross[i, i] + np.log(sum(np.exp(cross[i, k]) for k in range(4) if k != i)) for i in range(4)])
    assert float(adcl_loss(z1, z2)) == pytest.approx(by_hand, rel=1e-5)
    assert float(dcl_loss(z1, z2)) > float(adcl_loss(z1, z2))  # DCL also counts within-view negatives


def test_contrastive_paper_switches_change_what_is_learned_and_ranked(monkeypatch):
    from recommenders import contrastive

    interactions, vectors, _ = clustered()
    shapes = []
    original = contrastive.fit_elsa
    monkeypatch.setattr(contrastive, "fit_elsa", lambda m, *a, **kw: (shapes.append(m.shape), original(m, *a, **kw))[1])
    losses = []
    monkeypatch.setattr(contrastive, "adcl_loss", lambda *a: (losses.append("adcl"), adcl_loss(*a))[1])
    small = {**quick("contrastive"), "epochs": 3, "elsa_epochs": 3, "out_dim": 16, "elsa_dims": 8}
    compat = recommenders.create("contrastive", paper_compat=True, **small).fit(interactions, vectors)
    assert shapes[-1][1] == interactions.n_items  # cold columns in the ELSA matrix
    assert losses  # ADCL
    norms = np.linalg.norm(compat.collaborative, axis=1)
    assert not np.allclose(norms, 1.0)  # raw ELSA weights feed the tower
    assert not np.allclose(np.linalg.norm(compat.embeddings, axis=1), 1.0)  # un-normalised outputs rank
    losses.clear()
    default = recommenders.create("contrastive", **small).fit(interactions, vectors)
    assert shapes[-1][1] == int(interactions.hot_mask().sum()) and not losses
    np.testing.assert_allclose(np.linalg.norm(default.collaborative, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(default.embeddings, axis=1), 1.0, rtol=1e-5)


# -- hybrid and elsa: cold columns ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["hybrid", "elsa"])
def test_cold_negatives_put_the_cold_columns_in_the_training_matrix(name, monkeypatch):
    from recommenders import elsa

    interactions, vectors, _ = clustered()
    widths = []
    original = elsa.train_autoencoder
    monkeypatch.setattr(
        elsa, "train_autoencoder", lambda f, o, m, **kw: (widths.append(m.shape[1]), original(f, o, m, **kw))[1]
    )
    if name == "hybrid":
        from recommenders import hybrid

        monkeypatch.setattr(hybrid, "train_autoencoder", elsa.train_autoencoder)
    params = quick(name, epochs=2)
    recommenders.create(name, **params, cold_negatives=True).fit(interactions, vectors)
    recommenders.create(name, **params).fit(interactions, vectors)
    assert widths == [interactions.n_items, int(interactions.hot_mask().sum())]


# -- bert4rec --------------------------------------------------------------------------------------


def test_bert4rec_paper_item_table_is_the_raw_audio_and_cold_rows_learn_only_as_negatives():
    interactions, vectors, _ = clustered()
    hot = interactions.hot_mask()
    params = dict(quick("bert4rec"), epochs=4, heads=2, max_len=10)
    with_cold = recommenders.create("bert4rec", paper_compat=True, **params).fit(interactions, vectors)
    table = with_cold.net.item_table.detach().numpy()
    assert with_cold.net.item_projection is None and table.shape == vectors.shape  # hidden = audio dimension
    assert not np.allclose(table[hot], vectors[hot])  # trainable, started from the raw audio
    assert not np.allclose(table[~hot], vectors[~hot])  # the softmax spans the cold items too
    hot_only = recommenders.create("bert4rec", paper_compat=True, cold_negatives=False, **params)
    hot_only.fit(interactions, vectors)
    np.testing.assert_array_equal(hot_only.net.item_table.detach().numpy()[~hot], vectors[~hot])
    default = recommenders.create("bert4rec", **params).fit(interactions, vectors)
    assert default.net.item_table is None and default.net.item_projection is not None


def test_bert4rec_last_window_only_trains_on_fewer_examples(monkeypatch):
    from recommenders import bert4rec

    interactions, vectors, _ = clustered(per_context=10)
    sizes = []
    original = bert4rec.EpochLoop.__init__

    def spy(self, **kw):
        sizes.append(kw["n_examples"])
        original(self, **kw)

    monkeypatch.setattr(bert4rec.EpochLoop, "__init__", spy)
    params = dict(quick("bert4rec"), epochs=1, max_len=4)
    recommenders.create("bert4rec", last_window_only=True, **params).fit(interactions, vectors)
    recommenders.create("bert4rec", **params).fit(interactions, vectors)
    assert sizes == [interactions.n_contexts, 3 * interactions.n_contexts]  # 10 items: windows of 4, 4, 2


# -- elsa: the collaborative-only baseline ----------------------------------------------------------


def test_elsa_recovers_collaborative_structure_without_any_audio_and_scores_no_cold_item():
    interactions, _, cluster = clustered(seed=3)
    noise = np.random.default_rng(9).normal(size=(interactions.n_items, 8)).astype(np.float32)  # no signal at all
    model = recommenders.create("elsa", **quick("elsa")).fit(interactions, noise)
    hot = model.hot_mask
    hits = []
    for context, seq in enumerate(interactions.sequences()):
        items, _ = model.recommend(Query(context=context, pool="hot", exclude=seq), 5)
        hits.append(np.mean(cluster[items] == cluster[seq[0]]))
    assert np.mean(hits) > 0.7  # chance: 1/3
    scores = model.score(Query(history=[0, 1]))
    assert np.all(scores[~hot] == NO_SCORE) and np.all(scores[hot] > NO_SCORE)
    assert not model.recommends_for_cold and not model.route(Query(pool="cold")).supported


# -- honest baselines --------------------------------------------------------------------------------


def test_popular_on_cold_items_is_chance_whatever_the_item_order():
    interactions, vectors, _ = clustered()
    cold = np.flatnonzero(~interactions.hot_mask())
    relevant = set(cold[:2].tolist())  # the lowest indices: what an index-order tie-break would find first
    k, trials = 3, 300
    expected = 1 - (1 - k / len(cold)) * (1 - k / (len(cold) - 1))  # P(a top-3 of 9 holds one of 2)
    rates = {}
    for name in ("popular", "random"):
        found = []
        for seed in range(trials):
            model = recommenders.create(name, seed=seed).fit(interactions, vectors)
            items, _ = model.recommend(Query(history=[0], pool="cold"), k)
            found.append(bool(relevant & set(items.tolist())))
        rates[name] = np.mean(found)
    assert rates["popular"] == pytest.approx(expected, abs=0.09)
    assert rates["random"] == pytest.approx(expected, abs=0.09)
    # Same seed and question: the same list (a rerun gives the same figures).
    a = recommenders.create("popular", seed=4).fit(interactions, vectors)
    assert (
        a.recommend(Query(history=[0], pool="cold"), k)[0].tolist()
        == a.recommend(Query(history=[0], pool="cold"), k)[0].tolist()
    )


def test_popular_ties_among_hot_items_do_not_follow_the_index():
    interactions = Interactions([0, 1, 2, 3], [5, 6, 7, 8], [0, 1, 2, 3], 4, 10)  # four items, one play each
    firsts = set()
    for seed in range(20):
        model = recommenders.create("popular", seed=seed).fit(interactions, np.zeros((10, 2), np.float32))
        firsts.add(int(model.recommend(Query(pool="hot"), 1)[0][0]))
    assert firsts == {5, 6, 7, 8}


# -- validation-based selection ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shallow", "hybrid", "bert4rec"])
def test_selection_keeps_the_epoch_with_the_best_validation_metric(name):
    interactions, vectors, _ = clustered()
    planted = [0.10, 0.40, 0.90, 0.30, 0.20, 0.15]  # the validation metric after each epoch: best at epoch 3
    snapshots = []

    def score(model):
        snapshots.append(model.score(Query(history=[0, 1, 2])).copy())
        return planted[len(snapshots) - 1]

    model = recommenders.create(name, **quick(name, epochs=6))
    model.fit(interactions, vectors, validation=Validation(score, "NDCG@50", patience=2))
    assert model.selection["rule"] == "validation" and model.selection["epoch"] == 3
    assert model.selection["value"] == 0.90 and model.selection["epochs_run"] == 5  # two epochs without gain: stop
    np.testing.assert_allclose(model.score(Query(history=[0, 1, 2])), snapshots[2], rtol=1e-5)
    assert not np.allclose(snapshots[2], snapshots[4])

    fixed = recommenders.create(name, **quick(name, epochs=6)).fit(interactions, vectors)
    assert fixed.selection == {"rule": "fixed budget", "epoch": 6, "epochs_run": 6}
