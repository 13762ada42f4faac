"""The evaluation grid: rows, results a user acts on, progress, cancel, storage."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import recommenders
from mrs_tui.errors import UserError
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import Dataset, VectorSource
from mrs_tui.evaluation.runner import EvalRun, EvalSettings, list_runs, load_run, resolve_rows, run_grid, save_run
from recommenders import RecommenderSpec
from recommenders.knn import KNNRecommender


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(n_users=40, n_items=240, n_plays=4000, seed=11)


def dataset_of(data, vectors=None, contexts="users") -> Dataset:
    vectors = vectors or data.vectors
    sources = {name: VectorSource(name, data.item_keys, lambda m=m: m) for name, m in vectors.items()}
    return Dataset("generated", "log", data.log, sources, default_contexts=contexts)


def hot_ndcg(run: EvalRun, backend: str, recommender: str, part: str = "hot", k: int = 50) -> float:
    return run.cell(backend, recommender).parts[part][f"NDCG@{k}"].mean


def test_audio_recommender_beats_the_baselines_on_planted_structure(data):
    run = run_grid(dataset_of(data), EvalSettings(ks=(10, 50), recommenders=["knn"]))
    labels = [(c.backend, c.recommender) for c in run.cells]
    # knn on each backend, its z-score variant is not asked for, baselines always come along once.
    assert labels == [("good", "knn"), ("poor", "knn"), ("-", "popular"), ("-", "random")]
    assert all(c.error is None for c in run.cells)
    good, rnd = run.cell("good", "knn"), run.cell("-", "random")
    for part in ("hot", "cold"):
        assert good.parts[part]["NDCG@50"].mean > rnd.parts[part]["NDCG@50"].mean
    # The cleaner backend ranks better: the comparison the app exists for.
    assert hot_ndcg(run, "good", "knn") > hot_ndcg(run, "poor", "knn")
    assert not run.cell("-", "popular").scores_cold_items
    assert "(cold order arbitrary)" in run.table()
    n = run.split["hot_test_contexts"]
    assert good.parts["hot"]["NDCG@50"].n == n and len(good.values["hot"]["NDCG@50"]) == n


def test_default_rows_are_every_registered_recommender_plus_knn_zscore():
    labels = [row.label for row in resolve_rows(None)]
    assert set(recommenders.REGISTRY) <= set(labels)
    assert labels.index("knn+zscore") == labels.index("knn") + 1
    chosen = [row.label for row in resolve_rows(["knn+zscore"])]
    assert chosen[0] == "knn+zscore" and {"popular", "random"} <= set(chosen)
    with pytest.raises(UserError, match="unknown recommender 'nope'"):
        resolve_rows(["nope"])


def test_zscore_row_shows_when_standardising_helps(data):
    # One loud dimension of pure noise drowns the cosine; standardising every dimension fixes it.
    loud = data.vectors["good"].copy()
    loud[:, 0] = np.random.default_rng(0).normal(0, 1000, len(loud))
    run = run_grid(dataset_of(data, {"loud": loud}), EvalSettings(recommenders=["knn", "knn+zscore"]))
    assert hot_ndcg(run, "loud", "knn+zscore") > hot_ndcg(run, "loud", "knn") + 0.1


class _PlantedBroken(KNNRecommender):
    """A newly registered recommender whose training fails."""

    name = "broken"

    def fit(self, interactions, item_vectors, *, progress=None, cancel=None):
        raise RuntimeError("diverged")


def test_new_registry_entries_are_picked_up_and_a_failing_cell_does_not_stop_the_grid(data, monkeypatch):
    spec = RecommenderSpec("broken", f"{__name__}:_PlantedBroken", "fails", trainable=True)
    monkeypatch.setitem(recommenders.REGISTRY, "broken", spec)
    assert "broken" in [r.label for r in resolve_rows(None)]
    run = run_grid(dataset_of(data), EvalSettings(recommenders=["broken", "knn"], backends=["good"]))
    broken = run.cell("good", "broken")
    assert broken.error == "RuntimeError: diverged" and not broken.parts
    assert run.cell("good", "knn").parts["hot"]["NDCG@50"].mean > 0
    assert "failed: RuntimeError: diverged" in run.table()


def test_progress_counts_cells_and_cancel_keeps_what_is_finished(data):
    seen = []
    cancel = threading.Event()

    def progress(done, total, message):
        seen.append((done, total, message))
        if done >= 1 and message.startswith("done"):
            cancel.set()

    run = run_grid(dataset_of(data), EvalSettings(recommenders=["knn"]), progress=progress, cancel=cancel)
    assert run.cancelled
    assert [(c.backend, c.recommender) for c in run.cells] == [("good", "knn")]
    totals = {t for _, t, _ in seen}
    assert totals == {4}  # 2 backends x knn + popular + random
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and dones[-1] == 1
    assert any("fitting knn on good" in m for _, _, m in seen)
    assert "cancelled" in run.table()


def test_runs_are_stored_with_their_settings_and_read_back(data, store):
    run = run_grid(dataset_of(data), EvalSettings(ks=(5, 20), recommenders=["knn"], backends=["good"]))
    run_id = save_run(store, run)
    again = load_run(store, run_id)
    assert again.id == run_id
    assert again.settings["ks"] == [5, 20] and again.settings["backends"] == ["good"]
    assert again.settings["test_date"] is None and again.split["test_date"] == run.split["test_date"]
    assert again.cell("good", "knn").parts["hot"]["Recall@20"] == run.cell("good", "knn").parts["hot"]["Recall@20"]
    assert again.table() == run.table()
    listed = list_runs(store)
    assert listed[0]["id"] == run_id and listed[0]["best_hot_ndcg"]["recommender"] in ("knn", "popular", "random")
    with pytest.raises(UserError, match="no evaluation run 999"):
        load_run(store, 999)


def test_csv_has_one_row_per_part_cell_metric_and_k(data):
    run = run_grid(dataset_of(data), EvalSettings(ks=(10, 50), recommenders=["knn"], backends=["good"]))
    lines = run.to_csv().strip().splitlines()
    assert lines[0] == "run_id,dataset,part,backend,recommender,metric,k,mean,half_width,n"
    assert len(lines) - 1 == len(run.cells) * 3 * 3 * 2  # parts (hot, cold, val) x metrics x K's


def test_unknown_backend_and_bad_settings_are_one_line_errors(data):
    with pytest.raises(UserError, match="no vectors for backend 'mert'"):
        run_grid(dataset_of(data), EvalSettings(backends=["mert"]))
    with pytest.raises(UserError, match="K must be"):
        EvalSettings(ks=(0,))
    with pytest.raises(UserError, match="validation share"):
        EvalSettings(val_share=1.0)
