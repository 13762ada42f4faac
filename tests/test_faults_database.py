"""Fault injection on the database file: damaged pages, someone else's database, and `doctor`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from mrs_tui.catalogue import Catalogue
from mrs_tui.cli import main
from mrs_tui.store import Store
from tests.faults_helpers import register, write_tracks


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def indexed(tmp_path, capsys, monkeypatch):
    register(monkeypatch)
    root = tmp_path / "music"
    write_tracks(root, 6)
    db = tmp_path / "lib.db"
    code, _, err = run(capsys, "--db", str(db), "index", str(root), "--backend", "counted")
    assert code == 0, err
    return db, root


def damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` with garbage, as a failing disk would."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(np.random.default_rng(7).bytes(page_size))


def test_a_damaged_database_is_reported_and_nothing_more_is_written(indexed, capsys):
    db, root = indexed
    write_tracks(root / "new", 2, seed=5)
    damage_table(db, "tracks")
    before = digest(db)
    code, out, err = run(capsys, "--db", str(db), "index", str(root), "--backend", "counted")
    assert code == 3
    assert "the database" in err and "is damaged" in err and "run `mrs-tui doctor`" in err
    assert "nothing was written" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert digest(db) == before
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0

    code, _, err = run(capsys, "--db", str(db), "suggest", "--seed", "1", "--backend", "counted")
    assert code == 3 and "is damaged" in err and "Traceback" not in err

    code, out, err = run(capsys, "--db", str(db), "doctor", "--json")
    assert code == 3
    report = json.loads(out)
    assert report["database_ok"] is False
    assert report["findings"][0]["state"] == "damaged"
    assert digest(db) == before


def test_doctor_checks_caches_and_models_removes_leftovers_and_rebuilds(indexed, capsys):
    db, _root = indexed
    data = db.parent / f"{db.stem}-data"
    code, out, err = run(capsys, "--db", str(db), "doctor", "--json")
    assert code == 0, out + err
    assert json.loads(out)["problems"] == 0

    cache = Catalogue.cache_path(data / "indexes", "counted", "1")
    cache.write_bytes(cache.read_bytes()[:100])
    unfinished = data / "models" / "shallow@counted@1" / "123.partial"
    unfinished.mkdir(parents=True)
    (unfinished / "model.safetensors").write_bytes(b"half")
    old = time.time() - 3600
    os.utime(unfinished, (old, old))
    orphan = data / "models" / "shallow@counted@1" / "456"
    orphan.mkdir()
    outside = db.parent / "precious"
    outside.mkdir()
    with Store.open(db) as store, store.write() as conn:
        conn.execute(
            "INSERT INTO models (recommender, backend, version, path, trained_at, n_plays) VALUES (?, ?, ?, ?, ?, ?)",
            ["shallow", "counted", "1", "../precious", time.time(), 1],
        )

    code, out, err = run(capsys, "--db", str(db), "doctor", "--check-only", "--json")
    states = {f["name"]: f["state"] for f in json.loads(out)["findings"]}
    assert code == 1
    assert states[cache.name] == "damaged"
    assert states["models/shallow@counted@1/123.partial"] == "unfinished"
    assert states["models/shallow@counted@1/456"] == "orphan"
    assert states["shallow@counted"] == "outside"
    assert unfinished.exists() and orphan.exists()

    code, out, err = run(capsys, "--db", str(db), "doctor", "--rebuild", "--json")
    report = json.loads(out)
    assert not unfinished.exists() and not orphan.exists()
    assert outside.is_dir()  # never touched
    assert f"rebuilt indexes/{cache.name}" in report["repaired"]
    with Store.open(db) as store:
        assert Catalogue.read_cache(cache, "counted", "1") is not None
        assert Catalogue.read_cache(cache, "counted", "1").track_ids.tolist() == sorted(t.id for t in store.tracks())
    assert code == 1  # the row naming a folder outside is still reported


def test_pruning_old_models_never_deletes_a_folder_outside_the_data_folder(tmp_path, monkeypatch):
    import dataclasses

    import recommenders
    from backends import embedding_version
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine
    from mrs_tui.evaluation import synthetic

    monkeypatch.setitem(recommenders.REGISTRY, "knn", dataclasses.replace(recommenders.REGISTRY["knn"], trainable=True))
    data = synthetic.generate(
        n_users=2, n_items=20, n_plays=80, n_clusters=2, seed=1, backends={"mfcc": (8, 0.3)}, new_item_share=0.0
    )
    store = Store.open(tmp_path / "me.db")
    synthetic.write_history(store, data, versions={"mfcc": embedding_version("mfcc")})
    engine = Engine(store, Settings(backend="mfcc"))
    victims = [tmp_path / "documents", tmp_path / "me-data" / "elsewhere"]
    for victim in victims:
        victim.mkdir(parents=True)
        (victim / "keep.txt").write_text("mine")
    with store.write() as conn:
        for trained_at, path in enumerate([str(victims[0]), "../documents", "elsewhere", "models"]):
            conn.execute(
                "INSERT INTO models (recommender, backend, version, path, trained_at, n_plays) VALUES (?, ?, ?, ?, ?, 1)",
                ["knn", "mfcc", embedding_version("mfcc"), path, float(trained_at)],
            )
    engine.train("knn")
    engine.train("knn")
    remaining = store.conn.execute("SELECT path FROM models").fetchall()
    assert len(remaining) == 2 and all(p.startswith("models/") for (p,) in remaining)
    for victim in victims:
        assert (victim / "keep.txt").read_text() == "mine"
    assert (tmp_path / "me-data" / "models").is_dir()
    store.close()


def test_another_applications_database_is_refused_and_left_byte_for_byte(tmp_path, capsys):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.commit()
    conn.close()
    before = digest(other)
    for argv in (["library"], ["index", str(tmp_path)], ["doctor"], ["suggest"]):
        code, _, err = run(capsys, "--db", str(other), *argv)
        assert code == 3 and "another application's database (tables: invoices)" in err, err
    assert digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal or -shm beside it
    conn = sqlite3.connect(other)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def test_a_read_only_database_folder_says_so(indexed, capsys):
    db, _root = indexed
    folder_mode = db.parent.stat().st_mode
    os.chmod(db.parent, 0o555)
    try:
        if os.access(db.parent, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        code, _, err = run(capsys, "--db", str(db), "library")
    finally:
        os.chmod(db.parent, folder_mode)
    assert code == 3 and "is read-only" in err and "move it aside" not in err
