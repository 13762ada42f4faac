"""The database: schema migrations, WAL, concurrent writers, embeddings round-trip."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mrs_tui.errors import DatabaseError
from mrs_tui.store import MIGRATIONS, SCHEMA_VERSION, EmbeddingRow, Store


def test_new_database_is_wal_and_current(tmp_path):
    store = Store.open(tmp_path / "lib.db")
    assert store.schema_version == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrates_an_old_database_keeping_its_data(tmp_path):
    path = tmp_path / "old.db"
    # Build a version-1 file by hand, as an older mrs-tui would have left it.
    import sqlite_utils

    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO tracks (path, title, status, added_at, updated_at) VALUES ('/m/a.flac', 'Kept', 'ok', 1, 1)"
    )
    conn.close()

    store = Store.open(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.track_by_path("/m/a.flac").title == "Kept"
    assert store.conn.execute("SELECT count(*) FROM models").fetchone()[0] == 0  # a table from a later migration


def test_refuses_a_database_from_a_newer_version(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(DatabaseError, match="newer mrs-tui"):
        Store.open(path)


def test_unwritable_location_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder cannot be created where a file is, not even by root
    with pytest.raises(DatabaseError, match="cannot create folder") as err:
        Store.open(blocker / "sub" / "lib.db")
    assert "\n" not in str(err.value) and "--db" in str(err.value)


def test_garbage_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="not a usable mrs-tui database"):
        Store.open(path)
    assert path.read_bytes() == before


def test_embeddings_round_trip_and_failures(store):
    a = store.add_track("/m/a.flac", status="ok")
    b = store.add_track("/m/b.flac", status="ok")
    store.put_embeddings(
        [
            EmbeddingRow(a, "mfcc", "1", np.arange(4, dtype=np.float32), extras={"tags": [["rock", 0.9]]}),
            EmbeddingRow(b, "mfcc", "1", None, error="boom"),
        ]
    )
    ids, matrix, _ = store.embedding_matrix("mfcc", "1")
    assert ids.tolist() == [a]
    np.testing.assert_array_equal(matrix[0], np.arange(4, dtype=np.float32))
    assert store.embedding(a, "mfcc", "1").extras == {"tags": [["rock", 0.9]]}
    assert store.embedding(b, "mfcc", "1").error == "boom"
    # A failure counts as done: indexing does not retry it on every run.
    assert store.tracks_needing("mfcc", "1") == []
    # Another version of the same backend is a different key.
    assert {t.id for t in store.tracks_needing("mfcc", "2")} == {a, b}


def test_two_processes_write_at_once_without_locking_errors(tmp_path):
    path = tmp_path / "shared.db"
    store = Store.open(path)
    track = store.add_track("/m/x.flac", status="ok")
    writer = textwrap.dedent(
        f"""
        from mrs_tui.store import Store, EmbeddingRow
        import numpy as np
        s = Store.open({str(path)!r})
        for i in range(300):
            t = s.add_track(f"/other/{{i}}.flac", status="ok")
            s.put_embeddings([EmbeddingRow(t, "mfcc", "1", np.ones(8, np.float32))])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stderr=subprocess.PIPE, text=True)
    session = store.new_session(0.0)
    for i in range(300):
        store.add_play(session, track, "play", float(i))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "locked" not in err
    assert store.track_count() == 301
    assert store.play_count() == 300


def test_a_store_is_shared_safely_between_threads(store):
    import threading

    track = store.add_track("/m/t.flac", status="ok")
    session = store.new_session(0.0)
    errors = []

    def work(offset: int) -> None:
        try:
            for i in range(100):
                store.add_play(session, track, "play", float(offset + i))
                store.tracks()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.play_count() == 400
