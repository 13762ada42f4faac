"""Fault injection: several processes on one database at once, and processes killed mid-work."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.faults_helpers import analysis_count, child_env, cli_command, write_tracks

PLAYS_WRITER = """
import sys, time, random
from pathlib import Path
from mrs_tui.store import Store
store = Store.open(sys.argv[1])
stop = Path(sys.argv[2])
session = None
while not stop.exists():
    ids = [t.id for t in store.tracks()]
    if ids:
        if session is None:
            session = store.new_session(time.time())
        store.add_play(session, random.choice(ids), "play", time.time())
    time.sleep(0.02)
"""


@pytest.mark.parametrize("indexers", [2, 3])
def test_concurrent_indexers_with_a_reader_and_a_plays_writer_split_the_work(tmp_path, indexers):
    root = tmp_path / "music"
    write_tracks(root, 24)
    db = str(tmp_path / "lib.db")
    log = tmp_path / "analyses.log"
    stop = tmp_path / "stop"
    env = child_env(FAULTS_ANALYSIS_LOG=str(log))
    start = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    workers = [
        subprocess.Popen(cli_command("--db", db, "index", str(root), "--backend", "counted", "--json"), **start)
        for _ in range(indexers)
    ]
    writer = subprocess.Popen([sys.executable, "-c", PLAYS_WRITER, db, str(stop)], **start)
    reader_errors = []
    deadline = time.monotonic() + 240
    while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
        reader = subprocess.run(
            cli_command("--db", db, "library", "--json"), capture_output=True, text=True, env=env, timeout=60
        )
        if reader.returncode != 0:
            reader_errors.append(reader.stderr)
    stop.touch()
    results = [(*w.communicate(timeout=max(1, deadline - time.monotonic())), w.returncode) for w in workers]
    _, writer_err = writer.communicate(timeout=60)
    assert writer.returncode == 0, writer_err
    assert not reader_errors
    for _out, err, code in results:
        assert code == 0, err
        assert "Traceback" not in err
    embedded = sum(json.loads(out)["index"]["embedded"]["counted"] for out, _, _ in results)
    assert embedded == 24
    assert analysis_count(log) == 24  # each track analysed exactly once across the processes
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == 24
        assert conn.execute("SELECT count(*) FROM embeddings WHERE vector IS NOT NULL").fetchone()[0] == 24
        assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM plays").fetchone()[0] > 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
