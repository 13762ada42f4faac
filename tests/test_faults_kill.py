"""Fault injection: `kill -9` in the middle of indexing, training and evaluation.

After every kill the next run completes, nothing that was stored is lost or computed again, the
database passes SQLite's integrity check, and `doctor` finds the derived files equal to a rebuild.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults_helpers import analysis_count, child_env, cli_command, run_cli, write_tracks

TRACKS = 24


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """SIGKILL `process` once `ready()` holds; False when it finished first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return True
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
        raise AssertionError("the run neither finished nor reached the kill point in time")
    return False


def stored_vectors(db: str) -> dict[int, int]:
    """track id -> change number of its stored vector (a recomputation gives a new number)."""
    with sqlite3.connect(db) as conn:
        made = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'embeddings'").fetchone()
        rows = (
            conn.execute("SELECT track_id, change FROM embeddings WHERE vector IS NOT NULL").fetchall() if made else []
        )
    conn.close()
    return dict(rows)


def assert_sound(db: str) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_indexing_killed_at_several_points_resumes_without_losing_or_recomputing(tmp_path):
    root = tmp_path / "music"
    write_tracks(root, TRACKS)
    db = str(tmp_path / "lib.db")
    log = tmp_path / "analyses.log"
    env = child_env(FAULTS_ANALYSIS_LOG=str(log), FAULTS_EMBED_DELAY="0.05")
    argv = cli_command("--db", db, "index", str(root), "--backend", "counted", "--json")
    kept: dict[int, int] = {}
    points = [
        lambda: Path(db).exists(),  # while the schema is made or the folder scanned
        lambda: analysis_count(log) >= 3,  # inside the first batch
        lambda: len(stored_vectors(db)) >= 8,  # just after a batch was stored
        lambda: analysis_count(log) >= 20,  # deep into the run
    ]
    for ready in points:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        kill_when(process, lambda ready=ready: _safe(ready))
        process.communicate()
        assert_sound(db)
        now = stored_vectors(db)
        assert all(now.get(t) == c for t, c in kept.items()), "a stored vector was lost or recomputed"
        kept = now
    before = analysis_count(log)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    final = stored_vectors(db)
    assert len(final) == TRACKS
    assert all(final[t] == c for t, c in kept.items())
    assert analysis_count(log) - before == TRACKS - len(kept)  # only what was missing was analysed
    assert_sound(db)
    doctor = run_cli("--db", db, "doctor", "--check-only", "--json", timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def _safe(ready) -> bool:
    try:
        return bool(ready())
    except sqlite3.Error:  # the database is being created by the child
        return False


HISTORY = """
import sys
from backends import embedding_version
from mrs_tui.evaluation import synthetic
from mrs_tui.store import Store
data = synthetic.generate(n_users=3, n_items=60, n_plays=400, n_clusters=3, seed=5,
                          backends={"mfcc": (8, 0.3)}, new_item_share=0.0)
with Store.open(sys.argv[1]) as store:
    synthetic.write_history(store, data, versions={"mfcc": embedding_version("mfcc")})
"""


def _history(tmp_path: Path) -> str:
    db = str(tmp_path / "me.db")
    made = subprocess.run(
        [*cli_command()[:1], "-c", HISTORY, db], capture_output=True, text=True, env=child_env(), timeout=120
    )
    assert made.returncode == 0, made.stderr
    return db


def _table(db: str, sql: str) -> list:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


# What `mrs-tui train` runs, with short settings (the CLI trains with full ones: minutes on a
# small CPU); each progress report is appended to a file, so the test can kill mid-fit or mid-save.
TRAIN = """
import sys
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.store import Store

import os, time

def progress(done, total, message):
    with open(sys.argv[2], "a") as f:
        f.write(f"{message}\\n")
    # Hold still at the kill point the test asks for (so the kill lands there, however fast training is).
    if os.environ.get("MRS_TUI_TEST_HOLD_AT", "\\0") in message:
        time.sleep(120)

with Store.open(sys.argv[1]) as store:
    Engine(store, Settings(backend="mfcc")).train(
        "shallow", params={"epochs": 10, "batch_size": 64, "min_steps": 0, "threads": 1}, progress=progress
    )
"""


@pytest.mark.slow
def test_training_killed_mid_fit_keeps_the_previous_model_and_trains_next_time(tmp_path):
    db = _history(tmp_path)
    reports = tmp_path / "progress.txt"
    train = [*cli_command()[:1], "-c", TRAIN, db, str(reports)]
    first = subprocess.run(train, capture_output=True, text=True, env=child_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    models = _table(db, "SELECT id, path FROM models")
    lines = lambda: reports.read_text().splitlines() if reports.exists() else []  # noqa: E731
    # Mid-fit (after the first of ten epochs) and as saving begins (after the last epoch).
    for hold in ("epoch 1/", "saving the model"):
        reports.unlink(missing_ok=True)
        env = child_env(MRS_TUI_TEST_HOLD_AT=hold)
        process = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        ready = lambda hold=hold: any(hold in line for line in lines())  # noqa: E731
        assert kill_when(process, ready, timeout=300), "training finished before the kill point"
        process.communicate()
        assert_sound(db)
        assert _table(db, "SELECT id, path FROM models") == models  # the served model is untouched
    done = subprocess.run(train, capture_output=True, text=True, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(_table(db, "SELECT id FROM models")) == 2
    suggest = run_cli("--db", db, "suggest", "--recommender", "shallow", "--backend", "mfcc", "--seed", "1")
    assert suggest.returncode == 0 and "damaged" not in suggest.stdout, suggest.stderr
    doctor = run_cli("--db", db, "doctor", "--json", timeout=120)
    assert doctor.returncode == 0, doctor.stdout


def test_evaluation_killed_midway_stores_nothing_half_done_and_runs_again(tmp_path):
    db = _history(tmp_path)
    evaluate = cli_command(
        "--db", db, "eval", "--backends", "mfcc", "--recommenders", "knn,popular", "--quick", "-q", "--json"
    )
    for delay in (0.5, 2.0):
        process = subprocess.Popen(evaluate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        start = time.monotonic()
        kill_when(process, lambda start=start, delay=delay: time.monotonic() - start > delay, timeout=300)
        process.communicate()
        assert_sound(db)
        for (results,) in _table(db, "SELECT results FROM eval_runs"):
            assert json.loads(results)  # a stored run is a complete one
    done = subprocess.run(evaluate, capture_output=True, text=True, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert _table(db, "SELECT count(*) FROM eval_runs")[0][0] >= 1
    assert_sound(db)
