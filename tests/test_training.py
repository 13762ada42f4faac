"""Training from the local history, serving the newest model, cold-start mode in `suggest`."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest

import recommenders
from backends import embedding_version
from mrs_tui import training
from mrs_tui.cli import main
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.evaluation import synthetic
from mrs_tui.store import EmbeddingRow, Store
from recommenders.base import Cancelled

VERSION = embedding_version("mfcc")


@pytest.fixture
def listener(tmp_path):
    """A library of 80 tracks analysed with "mfcc" (vectors made up) and a history of ~600 plays."""
    data = synthetic.generate(
        n_users=4, n_items=80, n_plays=600, n_clusters=4, seed=2, backends={"mfcc": (16, 0.3)}, new_item_share=0.0
    )
    db = tmp_path / "me.db"
    store = Store.open(db)
    track_of = synthetic.write_history(store, data, versions={"mfcc": VERSION})
    engine = Engine(store, Settings(backend="mfcc", retrain_after_plays=5))
    yield engine, data, track_of
    store.close()


@pytest.fixture
def knn_learns(monkeypatch):
    """KNN registered as a trainable recommender: cheap, and it saves, loads and extends like the rest."""
    spec = dataclasses.replace(recommenders.REGISTRY["knn"], trainable=True)
    monkeypatch.setitem(recommenders.REGISTRY, "knn", spec)


def add_tracks(engine: Engine, vectors: np.ndarray, prefix: str = "new") -> list[int]:
    ids = [engine.store.add_track(f"/synthetic/{prefix}/{i}.flac", title=f"{prefix} {i}") for i in range(len(vectors))]
    engine.store.put_embeddings(
        EmbeddingRow(t, "mfcc", VERSION, v.astype(np.float32)) for t, v in zip(ids, vectors, strict=True)
    )
    return ids


def played(engine: Engine) -> set[int]:
    return engine.store.played_track_ids()


def test_training_records_the_model_and_it_serves_suggestions(listener, knn_learns):
    engine, _data, _ = listener
    record = engine.train("knn")
    assert record.recommender == "knn" and record.backend == "mfcc" and record.version == VERSION
    assert record.n_plays == engine.store.play_count() == 600
    assert record.last_play_id == engine.store.last_play_id()
    assert record.n_hot == len(played(engine)) and record.n_hot + record.n_cold == 80
    folder = engine.data_folder / record.path
    assert (folder / "params.json").is_file()
    assert np.load(folder / training.TRACK_IDS_FILE).tolist() == engine.catalogue("mfcc").track_ids.tolist()
    info = engine.model_info("knn", "mfcc")
    assert info.trained_at == record.trained_at and info.n_plays == 600 and info.new_plays == 0
    assert not info.retrain_due and "trained" in info.describe() and f"{record.n_hot} hot" in info.describe()
    seed = next(iter(played(engine)))
    result = engine.suggest(seed, k=5, recommender="knn")
    assert result.mode == "hot" and len(result.items) == 5
    assert isinstance(engine.fitted_model("knn", "mfcc"), training.AlignedModel)


def test_tracks_analysed_after_training_are_cold_and_reachable_through_the_audio_path(listener, knn_learns):
    engine, _, _ = listener
    engine.train("knn")
    catalogue = engine.catalogue("mfcc")
    # Three new tracks that sound like a played (hot) one, indexed after training.
    anchor = min(played(engine))
    base = catalogue.vector(anchor)
    new = add_tracks(engine, base[None, :] + np.random.default_rng(0).normal(0, 0.01, (3, len(base))))
    result = engine.suggest(new[0], k=5, recommender="knn")
    assert result.mode == "cold" and result.pool == "cold"
    model = engine.trained_model("knn", "mfcc")
    assert model.extended == 3
    hot = model.hot_mask
    index_of = engine.catalogue("mfcc").index_of
    assert all(not hot[index_of[s.track.id]] for s in result.items)  # only cold candidates
    assert {s.track.id for s in result.items[:2]} == set(new[1:])  # its near-duplicates come first
    info = engine.model_info("knn", "mfcc")
    assert info.n_cold == 80 - info.n_hot + 3


def test_cold_start_view_ranks_unplayed_tracks_from_recent_plays(listener, knn_learns):
    engine, _, _ = listener
    engine.train("knn")
    fresh = add_tracks(engine, np.random.default_rng(1).normal(0, 1, (4, 16)), prefix="fresh")
    result = engine.suggest(None, k=50, recommender="knn", pool="cold")
    assert result.mode == "cold" and result.basis == "recent" and result.profile_size > 0
    ids = {s.track.id for s in result.items}
    assert set(fresh) <= ids and not ids & played(engine)
    assert "recent plays" in result.items[0].reason


def test_on_the_fly_knn_follows_cold_start_mode_for_a_never_played_seed(listener):
    engine, _, _ = listener
    catalogue = engine.catalogue("mfcc")
    unplayed = [int(t) for t in catalogue.track_ids if int(t) not in played(engine)]
    # A never-played seed is cold for knn fitted on the history: cold pool, audio path.
    result = engine.suggest(unplayed[0], k=20, recommender="knn")
    assert result.mode == "cold" and result.pool == "cold" and "cold start" in result.describe()
    assert all(s.new for s in result.items) and unplayed[0] not in {s.track.id for s in result.items}
    # A played seed keeps the whole library as candidates.
    hot_seed = next(iter(played(engine)))
    hot = engine.suggest(hot_seed, k=20, recommender="knn")
    assert hot.mode == "hot" and hot.pool == "all"
    # The cold-start view: for knn, only never-played tracks, whatever the seed.
    cold = engine.suggest(hot_seed, k=5, recommender="knn", pool="cold")
    assert cold.mode == "cold" and all(s.new for s in cold.items)
    assert engine.suggest(None, k=5, recommender="knn").mode == "popular"
    info = engine.model_info("knn", "mfcc")
    assert not info.trainable and info.n_hot == len(played(engine)) and "on the fly" in info.describe()


def test_untrained_recommender_says_how_to_train_it(listener, knn_learns):
    engine, _, _ = listener
    with pytest.raises(training.ModelNotTrained, match="mrs-tui train"):
        engine.suggest(next(iter(played(engine))), recommender="knn")
    info = engine.model_info("knn", "mfcc")
    assert info.trained_at is None and info.retrain_due and "not trained yet" in info.describe()


def test_previous_model_serves_until_the_new_one_is_ready(listener, knn_learns):
    engine, _, _ = listener
    first = engine.train("knn")
    assert engine.trained_model("knn", "mfcc").record.id == first.id
    fitting, release = threading.Event(), threading.Event()
    messages = []

    def progress(done, total, message):
        messages.append(message)
        fitting.set()
        release.wait(10)

    worker = threading.Thread(target=lambda: messages.append(engine.train("knn", progress=progress)))
    worker.start()  # trains through its own database connection
    assert fitting.wait(10)
    assert engine.trained_model("knn", "mfcc").record.id == first.id  # still the old one
    engine.suggest(next(iter(played(engine))), recommender="knn")
    release.set()
    worker.join(10)
    second = messages[-1]
    assert isinstance(second, training.ModelRecord) and second.id != first.id
    assert engine.trained_model("knn", "mfcc").record.id == second.id
    assert "saving the model" in messages


def test_retrain_is_due_after_enough_new_positive_plays(listener, knn_learns):
    engine, _, _ = listener
    engine.train("knn")
    tracks = [int(t) for t in engine.catalogue("mfcc").track_ids[:6]]
    for t in tracks[:4]:
        engine.record(t, "complete")
    engine.record(tracks[4], "skip")  # not a positive play
    assert not engine.retrain_due("knn", "mfcc") and "knn" not in engine.due_models("mfcc")
    engine.record(tracks[5], "like")
    assert engine.retrain_due("knn", "mfcc") and "knn" in engine.due_models("mfcc")
    assert engine.model_info("knn", "mfcc").new_plays == 5


def test_cancelled_training_saves_nothing(listener, knn_learns):
    engine, _, _ = listener
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.train("knn", cancel=cancel)
    assert engine.store.model_records() == []
    assert not (engine.data_folder / "models").exists() or not any((engine.data_folder / "models").rglob("params.json"))


def test_only_the_last_models_are_kept(listener, knn_learns):
    engine, _, _ = listener
    records = [engine.train("knn") for _ in range(3)]
    kept = engine.store.model_records("knn")
    assert [r.id for r in kept] == [records[2].id, records[1].id]
    assert not (engine.data_folder / records[0].path).exists()
    assert (engine.data_folder / records[2].path).is_dir()


def test_tracks_gone_from_the_library_are_never_suggested(listener, knn_learns):
    engine, _, _ = listener
    engine.train("knn")
    seed = next(iter(played(engine)))
    first = engine.suggest(seed, k=3, recommender="knn").items[0].track.id
    engine.store.update_track(first, status="missing")
    again = engine.suggest(seed, k=10, recommender="knn")
    assert first not in {s.track.id for s in again.items}


def test_non_trainable_recommenders_are_refused(listener):
    engine, _, _ = listener
    with pytest.raises(Exception, match="fitted on the fly"):
        engine.train("popular")


def test_a_neural_recommender_trains_saves_and_takes_new_tracks(listener):
    engine, _, _ = listener
    name = "hybrid" if "hybrid" in recommenders.REGISTRY else pytest.skip("no hybrid recommender registered")
    params = dict(recommenders.recommender_class(name).quick_params)
    record = engine.train(name, params=params)
    assert json.loads(json.dumps(record.params))["epochs"] == params["epochs"]
    new = add_tracks(engine, np.random.default_rng(3).normal(0, 1, (2, 16)))
    result = engine.suggest(new[0], k=5, recommender=name)
    assert result.mode == "cold" and len(result.items) >= 1
    assert engine.trained_model(name, "mfcc").extended == 2


def test_train_command(listener, knn_learns, capsys):
    engine, _, _ = listener
    db = str(engine.store.path)
    code = main(["--db", db, "--config", str(Path(db).parent / "none.toml"), "train", "--backend", "mfcc",
                 "--recommenders", "knn", "--json", "-q"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    (entry,) = json.loads(out)
    assert entry["trained"] and entry["recommender"] == "knn" and entry["n_plays"] == 600
    code = main(["--db", db, "train", "--backend", "mfcc", "--recommenders", "knn", "--if-due"])
    out, _ = capsys.readouterr()
    assert code == 0 and "knn on mfcc: not due" in out
    code = main(["--db", db, "train", "--backend", "mfcc", "--recommenders", "popular"])
    _, err = capsys.readouterr()
    assert code == 2 and "fitted on the fly" in err
