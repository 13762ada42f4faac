"""Unit tests of the pieces inside the learned recommenders (the shared contract is in
test_recommenders_contract.py): ELSA's normalisation and loss, the decoupled contrastive
loss against a hand computation, BERT4Rec's mask at the end, the shallow net's frozen item
side, the random floor, the safetensors save path and the import-time promise."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch

import recommenders
from mrs_tui.errors import UserError
from recommenders import Interactions, Query
from recommenders.base import WEIGHTS_FILE, ContextSequences


def tiny_interactions(n_contexts: int = 6, n_items: int = 10, seed: int = 0) -> tuple[Interactions, np.ndarray]:
    rng = np.random.default_rng(seed)
    contexts, items = [], []
    for c in range(n_contexts):
        chosen = rng.choice(n_items - 2, size=4, replace=False)  # the last two items stay cold
        contexts += [c] * 4
        items += chosen.tolist()
    interactions = Interactions(
        np.array(contexts), np.array(items), np.arange(len(items), dtype=float), n_contexts=n_contexts, n_items=n_items
    )
    return interactions, rng.normal(size=(n_items, 8)).astype(np.float32)


# -- ELSA ----------------------------------------------------------------------------------------


def test_elsa_factors_are_unit_rows_and_the_prediction_removes_self_similarity():
    from recommenders.elsa import ELSA, elsa_scores

    torch.manual_seed(0)
    model = ELSA(n_items=7, n_dims=3)
    with torch.no_grad():
        model.weight.mul_(torch.arange(1, 8, dtype=torch.float32)[:, None])  # rows of very different lengths
        factors = model.factors()
        np.testing.assert_allclose(factors.norm(dim=1).numpy(), np.ones(7), rtol=1e-6)
        x = torch.zeros(1, 7)
        x[0, [1, 4]] = 1.0
        prediction = model(x)[0].numpy()
    a = factors.numpy()
    by_hand = a @ (a[1] + a[4])
    by_hand[[1, 4]] -= 1.0
    np.testing.assert_allclose(prediction, by_hand, rtol=1e-5, atol=1e-6)
    # The played items' own similarity (1 after normalisation) is gone: what is left is the other one.
    assert prediction[1] == pytest.approx(float(a[1] @ a[4]), abs=1e-6)
    np.testing.assert_allclose(elsa_scores([4, 1, 1], a), by_hand, rtol=1e-5, atol=1e-6)


def test_nmse_compares_directions_only():
    from recommenders.elsa import nmse_loss

    prediction = torch.tensor([[3.0, 4.0, 0.0], [0.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    unit_p = np.array([[0.6, 0.8, 0.0], [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)]])
    by_hand = ((unit_p - target.numpy()) ** 2).mean()
    assert float(nmse_loss(prediction, target)) == pytest.approx(by_hand, rel=1e-6)
    assert float(nmse_loss(10 * prediction, 0.5 * target)) == pytest.approx(by_hand, rel=1e-6)
    assert float(nmse_loss(target * 7, target)) == pytest.approx(0.0, abs=1e-7)


def test_elsa_training_lowers_the_loss_and_skips_empty_rows():
    from recommenders._torch import seeded
    from recommenders.elsa import fit_elsa

    interactions, _ = tiny_interactions(n_contexts=30, n_items=12)
    matrix = interactions.matrix()
    matrix.resize((33, 12))  # three contexts without any item
    reports = []
    factors = fit_elsa(
        matrix.tocsr(),
        4,
        epochs=30,
        batch_size=8,
        lr=0.1,
        optimizer="nadam",
        device=torch.device("cpu"),
        generator=seeded(0),
        progress=lambda done, total, message: reports.append(message),
    )
    assert factors.shape == (12, 4)
    np.testing.assert_allclose(np.linalg.norm(factors, axis=1), 1.0, rtol=1e-5)
    losses = [float(m.rsplit(" ", 1)[1]) for m in reports]
    assert losses[-1] < losses[0]


# -- contrastive ---------------------------------------------------------------------------------


def test_decoupled_contrastive_loss_matches_a_hand_computation():
    from recommenders.contrastive import dcl_loss

    rng = np.random.default_rng(3)
    z1 = rng.normal(size=(3, 4))
    z2 = rng.normal(size=(3, 4))
    z1 /= np.linalg.norm(z1, axis=1, keepdims=True)
    z2 /= np.linalg.norm(z2, axis=1, keepdims=True)
    t = 0.1
    terms = []
    for i in range(3):
        negatives = [math.exp(z1[i] @ z1[k] / t) + math.exp(z1[i] @ z2[k] / t) for k in range(3) if k != i]
        terms.append(-(z1[i] @ z2[i]) / t + math.log(sum(negatives)))
    by_hand = sum(terms) / 3
    got = dcl_loss(torch.tensor(z1), torch.tensor(z2), temperature=t)
    assert float(got) == pytest.approx(by_hand, rel=1e-9)
    # "Decoupled": the positive pair is not in the denominator, so aligned views push the loss down freely.
    aligned = dcl_loss(torch.tensor(z1), torch.tensor(z1), temperature=t)
    assert float(aligned) < float(got)


def test_contrastive_hot_items_average_both_views_and_cold_items_use_audio():
    interactions, vectors = tiny_interactions()
    model = recommenders.create("contrastive", epochs=2, elsa_epochs=2, out_dim=16, elsa_dims=4, threads=1)
    model.fit(interactions, vectors)
    with torch.no_grad():
        audio = model.towers.embed_audio(torch.from_numpy(model.scaling(vectors))).numpy()
        collaborative = model.towers.embed_collaborative(torch.from_numpy(model.collaborative)).numpy()
    hot = np.flatnonzero(model.hot_mask)
    expected = (audio[hot] + collaborative) / np.linalg.norm(audio[hot] + collaborative, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embeddings[hot], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.embeddings[~model.hot_mask], audio[~model.hot_mask], rtol=1e-6)
    with pytest.raises(ValueError, match="hot_view"):
        recommenders.create("contrastive", hot_view="both")


# -- BERT4Rec --------------------------------------------------------------------------------------


def test_bert4rec_puts_the_mask_after_the_most_recent_items():
    from recommenders.bert4rec import prediction_tokens, windows

    assert prediction_tokens([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], max_len=5, mask_token=99).tolist() == [7, 8, 9, 10, 99]
    assert prediction_tokens([], max_len=5, mask_token=99).tolist() == [99]
    cut = windows([np.arange(7), np.arange(2)], 3)  # long sequences are cut from their end
    assert sorted(tuple(w.tolist()) for w in cut) == [(0,), (0, 1), (1, 2, 3), (4, 5, 6)]


@pytest.mark.slow
def test_bert4rec_predicts_the_next_item_of_a_sequence():
    # Contexts walk a cycle of 12 items; the model must learn "after i comes i + 1", which it can
    # only express for a query if the mask is asked at the end of the history. Walks of varied
    # length put the last (unseen-right-neighbour) position everywhere, as real sessions do.
    rng = np.random.default_rng(0)
    n = 12
    contexts, items = [], []
    for c in range(120):
        start = int(rng.integers(n))
        walk = (start + np.arange(int(rng.integers(3, 9)))) % n
        contexts += [c] * len(walk)
        items += walk.tolist()
    interactions = Interactions(
        np.array(contexts), np.array(items), np.arange(len(items), dtype=float), n_contexts=120, n_items=n
    )
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    model = recommenders.create("bert4rec", epochs=60, hidden=32, max_len=10, batch_size=32, dropout=0.0, threads=1)
    model.fit(interactions, vectors)
    correct = 0
    for last in range(n):
        history = [(last - 2) % n, (last - 1) % n, last]
        top, _ = model.recommend(Query(history=history), 1)
        correct += int(top[0] == (last + 1) % n)
    assert correct >= 9, f"next item right for {correct}/12 histories"


# -- shallow --------------------------------------------------------------------------------------


def test_shallow_keeps_item_vectors_frozen_and_learns_contexts():
    interactions, vectors = tiny_interactions()
    model = recommenders.create("shallow", epochs=5, batch_size=8, threads=1).fit(interactions, vectors)
    inputs = model.scaling(vectors)  # standardised audio vectors
    np.testing.assert_array_equal(model.net.items.weight.detach().numpy(), inputs)
    initial = np.stack([inputs[np.unique(s)].mean(axis=0) for s in interactions.sequences()])
    assert not np.allclose(model.net.contexts.weight.detach().numpy(), initial)
    # A history query starts where a context vector started: the mean of its items' vectors.
    seq = interactions.sequences()[0]
    with torch.no_grad():
        projected = model.net.project(torch.from_numpy(inputs[seq].mean(axis=0, keepdims=True))).numpy()[0]
    np.testing.assert_allclose(model.query_vector(Query(history=seq)), projected / np.linalg.norm(projected), rtol=1e-5)


def test_shallow_unfrozen_items_train_only_hot_rows():
    interactions, vectors = tiny_interactions()
    model = recommenders.create("shallow", epochs=5, batch_size=8, freeze_items=False, threads=1)
    model.fit(interactions, vectors)
    learned = model.net.items.weight.detach().numpy()
    inputs = model.scaling(vectors)
    hot = model.hot_mask
    assert not np.allclose(learned[hot], inputs[hot])
    np.testing.assert_array_equal(learned[~hot], inputs[~hot])  # cold items are never sampled as negatives


def test_hinge_loss_by_hand():
    from recommenders.shallow import hinge_loss

    positive = torch.tensor([[0.9], [0.1]])
    negative = torch.tensor([[0.5, 0.8], [0.0, -0.5]])
    # rows: max(0, .2-.9+.5)=0, max(0, .2-.9+.8)=.1, max(0, .2-.1+0)=.1, max(0, .2-.1-.5)=0
    assert float(hinge_loss(positive, negative, 0.2)) == pytest.approx(0.05, rel=1e-6)


# -- random ---------------------------------------------------------------------------------------


def test_random_is_repeatable_per_query_and_differs_between_queries_and_seeds():
    interactions, vectors = tiny_interactions(n_items=200)
    a = recommenders.create("random", seed=1).fit(interactions, vectors)
    b = recommenders.create("random", seed=2).fit(interactions, vectors)
    q1, q2 = Query(history=[1, 2]), Query(history=[1, 3])
    np.testing.assert_array_equal(a.recommend(q1, 20)[0], a.recommend(q1, 20)[0])
    assert a.recommend(q1, 20)[0].tolist() != a.recommend(q2, 20)[0].tolist()
    assert a.recommend(q1, 20)[0].tolist() != b.recommend(q1, 20)[0].tolist()


# -- plumbing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shallow", "contrastive", "hybrid", "bert4rec"])
def test_trained_models_are_saved_as_safetensors_without_pickles(name, tmp_path):
    from safetensors.numpy import load_file

    interactions, vectors = tiny_interactions()
    cls = recommenders.recommender_class(name)
    model = recommenders.create(name, **{**cls.quick_params, "epochs": 1}).fit(interactions, vectors)
    folder = model.save(tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "params.json", "state.npz"]
    meta = json.loads((folder / "params.json").read_text())
    assert meta["name"] == name and meta["params"]["epochs"] == 1
    weights = load_file(str(folder / WEIGHTS_FILE))
    assert all(v.dtype == np.float32 for v in weights.values())
    with np.load(folder / "state.npz", allow_pickle=False) as state:
        assert "hot_mask" in state.files


@pytest.mark.parametrize("name", sorted(recommenders.REGISTRY))
def test_fitting_on_no_interactions_still_scores_from_what_is_known(name):
    _, vectors = tiny_interactions()
    empty = Interactions(np.zeros(0), np.zeros(0), np.zeros(0), n_contexts=0, n_items=len(vectors))
    cls = recommenders.recommender_class(name)
    model = recommenders.create(name, **{**cls.quick_params, **({"epochs": 1} if "epochs" in cls.quick_params else {})})
    model.fit(empty, vectors)
    assert not model.hot_mask.any()
    items, _ = model.recommend(Query(history=[0, 1], exclude=[0, 1]), 3)
    assert len(items) == 3 and not {0, 1} & set(items.tolist())


@pytest.mark.parametrize("name", ["shallow", "contrastive", "hybrid", "bert4rec"])
def test_the_scale_of_a_backend_s_vectors_does_not_change_what_is_learned(name):
    interactions, vectors = tiny_interactions(n_contexts=20, n_items=30)
    params = {**recommenders.recommender_class(name).quick_params, "epochs": 3}
    plain = recommenders.create(name, **params).fit(interactions, vectors)
    scaled = recommenders.create(name, **params).fit(interactions, 1000.0 * vectors + 5.0)
    for query in (Query(context=0), Query(history=[1, 2, 3], pool="cold")):
        np.testing.assert_array_equal(plain.recommend(query, 5)[0], scaled.recommend(query, 5)[0])
    with pytest.raises(ValueError, match="8-d vectors, not 9-d"):
        plain.extend_items(np.zeros((2, 9), np.float32))


@pytest.mark.parametrize("name", sorted(recommenders.REGISTRY))
def test_a_history_of_three_plays_trains_to_finite_scores(name):
    # Three hot items in batches of two leave a batch of one: no negatives for the contrastive
    # loss, one row for ELSA, one window for BERT4Rec.
    interactions = Interactions(np.array([0, 0, 1]), np.array([0, 1, 2]), np.arange(3.0), n_contexts=2, n_items=5)
    vectors = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    params = dict(recommenders.recommender_class(name).quick_params)
    if recommenders.REGISTRY[name].trainable:
        params["batch_size"] = 2
    model = recommenders.create(name, **params).fit(interactions, vectors)
    assert np.isfinite(model.score(Query(history=[0]))).all()
    assert np.isfinite(model.score(Query(context=1))).all()


def test_extend_items_needs_a_fitted_model():
    model = recommenders.create("hybrid")
    with pytest.raises(ValueError, match="not fitted"):
        model.extend_items(np.zeros((2, 8), np.float32))


def test_asking_for_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch):
    from recommenders._torch import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu" and resolve_device("auto").type == "cpu"
    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device 'gpu please'"):
        resolve_device("gpu please")


def test_training_threads_are_restored_afterwards():
    interactions, vectors = tiny_interactions()
    before = torch.get_num_threads()
    recommenders.create("hybrid", epochs=1, threads=1).fit(interactions, vectors)
    assert torch.get_num_threads() == before


def test_progress_of_a_two_stage_fit_climbs_to_the_end():
    interactions, vectors = tiny_interactions()
    reports = []
    model = recommenders.create("contrastive", epochs=3, elsa_epochs=2, out_dim=8, elsa_dims=4, threads=1)
    model.fit(interactions, vectors, progress=lambda done, total, message: reports.append((done, total)))
    fractions = [d / t for d, t in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len({t for _, t in reports}) == 1


def test_a_cancel_set_from_another_thread_stops_training():
    interactions, vectors = tiny_interactions(n_contexts=40)
    cancel = threading.Event()
    model = recommenders.create("shallow", epochs=100_000, batch_size=8, threads=1)
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    with pytest.raises(recommenders.Cancelled):
        model.fit(interactions, vectors, cancel=cancel)
    timer.cancel()


def test_context_sequences_round_trip_and_merge_a_query():
    seqs = ContextSequences([np.array([3, 1]), np.array([], np.int64), np.array([5])])
    again = ContextSequences.from_arrays(seqs.to_arrays())
    assert [s.tolist() for s in again.sequences] == [[3, 1], [], [5]]
    assert again.query_items(Query(context=0, history=[7], seed=8)) == [3, 1, 7, 8]
    assert again.query_items(Query(context=9, history=[7])) == [7]
