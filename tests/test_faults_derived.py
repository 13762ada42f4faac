"""Fault injection on derived files: vector caches and trained models, changed, damaged or replaced.

Derived files are disposable: whatever happens to them, every command either rebuilds them from
the database or says what is wrong, and never answers from stale or garbled data.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mrs_tui.catalogue import Catalogue
from mrs_tui.cli import main
from mrs_tui.demo import synthesize, write_track
from mrs_tui.store import Store
from tests.faults_helpers import RATE, register, write_tracks


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def indexed(tmp_path, capsys, monkeypatch):
    register(monkeypatch)
    root = tmp_path / "music"
    paths = write_tracks(root, 8)
    db = tmp_path / "lib.db"
    code, _, err = run(capsys, "--db", str(db), "index", str(root), "--backend", "counted")
    assert code == 0, err
    return db, root, paths


def cache_file(db: Path) -> Path:
    return Catalogue.cache_path(db.parent / f"{db.stem}-data" / "indexes", "counted", "1")


def assert_equals_a_rebuild(db: Path) -> None:
    with Store.open(db) as store:
        cached = Catalogue.load(store, "counted", "1", folder=cache_file(db).parent)
        fresh = Catalogue("counted", "1")
        fresh.rebuild(store)
        assert cached.track_ids.tolist() == fresh.track_ids.tolist()
        np.testing.assert_array_equal(cached.vectors, fresh.vectors)
        for track_id, vector in zip(fresh.track_ids, fresh.vectors, strict=True):
            np.testing.assert_array_equal(vector, store.embedding(int(track_id), "counted", "1").vector)


def suggestions(capsys, db: Path) -> list[tuple[int, float]]:
    code, out, err = run(capsys, "--db", str(db), "suggest", "--seed", "1", "--backend", "counted", "--json")
    assert code == 0, err
    return [(s["id"], s["score"]) for s in json.loads(out)["suggestions"]]


def test_a_changed_file_is_searched_with_its_new_vector(indexed, capsys):
    db, root, paths = indexed
    before = suggestions(capsys, db)
    # The last track analysed holds the highest rowid: its new row used to take the same rowid again.
    changed = paths[-1]
    write_track(changed, synthesize("chiptune", 2.5, sr=RATE, seed=99), RATE)  # new content, same path
    os.utime(changed, (os.stat(changed).st_atime, os.stat(changed).st_mtime + 10))
    code, out, err = run(capsys, "--db", str(db), "index", str(root), "--backend", "counted", "--json")
    assert code == 0, err
    assert json.loads(out)["scan"]["changed"] == 1
    assert_equals_a_rebuild(db)
    after = suggestions(capsys, db)
    shutil.rmtree(cache_file(db).parent)
    assert suggestions(capsys, db) == after != before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _folder(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


def _permute_rows(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["vectors"] = arrays["vectors"][::-1].copy()  # a well-formed file with the wrong content
    np.savez(path.with_suffix(""), **arrays)


def _zero_vectors(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["vectors"] = np.zeros_like(arrays["vectors"])
    np.savez(path.with_suffix(""), **arrays)


@pytest.mark.parametrize("damage", [_truncate, _zero, _random_bytes, _folder, _permute_rows, _zero_vectors])
def test_a_damaged_vector_cache_is_rebuilt_by_every_command(indexed, capsys, damage):
    db, root, _ = indexed
    healthy = suggestions(capsys, db)
    damage(cache_file(db))
    assert suggestions(capsys, db) == healthy
    code, _, err = run(capsys, "--db", str(db), "index", str(root), "--backend", "counted")
    assert code == 0, err
    assert cache_file(db).is_file()
    assert_equals_a_rebuild(db)


def test_a_command_that_rebuilt_the_cache_writes_it_back(indexed, capsys, monkeypatch):
    """The next start reads the repaired file: it does not read every vector from the store again."""
    db, _, _ = indexed
    healthy = suggestions(capsys, db)
    cache_file(db).unlink()
    assert suggestions(capsys, db) == healthy
    assert cache_file(db).is_file()
    rebuilds = []
    monkeypatch.setattr(Catalogue, "rebuild", lambda self, store: rebuilds.append(self.backend))
    assert suggestions(capsys, db) == healthy
    assert rebuilds == []


# -- trained models --------------------------------------------------------------------------

QUICK_SHALLOW = {"epochs": 2, "batch_size": 256, "min_steps": 0, "threads": 1}


@pytest.fixture
def trained(tmp_path):
    from backends import embedding_version
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine
    from mrs_tui.evaluation import synthetic

    data = synthetic.generate(
        n_users=3, n_items=40, n_plays=300, n_clusters=3, seed=4, backends={"mfcc": (8, 0.3)}, new_item_share=0.0
    )
    db = tmp_path / "me.db"
    store = Store.open(db)
    synthetic.write_history(store, data, versions={"mfcc": embedding_version("mfcc")})
    engine = Engine(store, Settings(backend="mfcc", recommender="shallow"))
    record = engine.train("shallow", params=QUICK_SHALLOW)
    yield engine, db, engine.data_folder / record.path
    store.close()


def _model_truncated(folder: Path) -> None:
    _truncate(folder / "model.safetensors")


def _model_garbled(folder: Path) -> None:
    _random_bytes(folder / "model.safetensors")


def _model_folder(folder: Path) -> None:
    _folder(folder / "model.safetensors")


def _track_ids_truncated(folder: Path) -> None:
    _truncate(folder / "track_ids.npy")


def _params_garbled(folder: Path) -> None:
    (folder / "params.json").write_text("{ not json")


@pytest.mark.parametrize(
    "damage", [_model_truncated, _model_garbled, _model_folder, _track_ids_truncated, _params_garbled]
)
def test_a_damaged_model_is_reported_and_knn_serves_until_it_is_trained_again(trained, capsys, damage):
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine

    engine, db, folder = trained
    seed = int(engine.catalogue("mfcc").track_ids[0])
    knn = [s.track.id for s in Engine(Store.open(db), Settings(backend="mfcc")).suggest(seed, recommender="knn").items]
    damage(folder)
    fresh = Engine(Store.open(db), Settings(backend="mfcc", recommender="shallow"))
    result = fresh.suggest(seed)
    assert result.note.startswith("the shallow model is damaged: train it again (t)")
    assert result.recommender == "knn" and [s.track.id for s in result.items] == knn

    code, out, err = run(capsys, "--db", str(db), "suggest", "--seed", str(seed), "--recommender", "shallow", "--json")
    assert code == 0, err
    assert "damaged: train it again" in json.loads(out)["note"]

    fresh.train("shallow", params=QUICK_SHALLOW)
    again = fresh.suggest(seed)
    assert again.recommender == "shallow" and "damaged" not in again.note
