"""Fault injection on evaluation inputs: every bad row is named by file and line, nothing is stored."""

from __future__ import annotations

import pickle
import sqlite3

import numpy as np
import pytest

from mrs_tui.cli import main
from mrs_tui.errors import UserError
from mrs_tui.evaluation.datasets import npy_vectors, read_play_log, read_track_ids

GOOD_ROWS = [f"u{i % 5}\t{i % 40}\t{1_600_000_000 + 3600 * i}\t1" for i in range(200)]


def write_log(path, rows):
    path.write_text("user_id\ttrack_id\ttimestamp\tcount\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("u1\t3\t1e15\t1", "the timestamp 1e+15 is not a date between 1900 and 2200"),
        ("u1\t3\t1600000000\tmany", "the count 'many' is not a number"),
        ("u1\t3\tlast tuesday\t1", "cannot read the time 'last tuesday'"),
        ("u1\t3\tnan\t1", "no timestamp"),
        ("u1\t3\t1600000000\t-2", "the count"),
        ("u1\t\t1600000000\t1", "no track id"),
    ],
)
def test_each_bad_row_of_a_play_log_is_named_by_file_and_line(tmp_path, bad, message):
    rows = list(GOOD_ROWS)
    rows[120] = bad
    path = write_log(tmp_path / "log.tsv", rows)
    with pytest.raises(UserError) as err:
        read_play_log(path)
    text = str(err.value)
    assert text.startswith(f"{path}:122: ") and message in text, text  # header is line 1
    assert "\n" not in text and "nothing was stored" in text


def test_track_ids_that_are_binary_or_pickled_are_refused_with_a_line(tmp_path):
    pickled = tmp_path / "ids.txt"
    pickled.write_bytes(pickle.dumps(list(range(10))))
    with pytest.raises(UserError, match=r"ids\.txt:1: this is not text"):
        read_track_ids(pickled)
    as_npy = tmp_path / "ids.npy"
    np.save(as_npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="cannot read it as a numpy array of ids"):
        read_track_ids(as_npy)


def test_nan_or_infinite_embeddings_are_refused_with_the_row(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    matrix[137, 2] = np.nan
    path = tmp_path / "emb.npy"
    np.save(path, matrix)
    with pytest.raises(UserError, match=r"row 137 .* NaN or infinite"):
        npy_vectors(path, None)
    matrix[137, 2] = np.inf
    np.save(path, matrix)
    with pytest.raises(UserError, match="row 137"):
        npy_vectors(path, None)


def test_eval_on_a_bad_log_prints_one_line_and_stores_nothing(tmp_path, capsys):
    rows = list(GOOD_ROWS)
    rows[10] = "u1\t3\t1600000000\tmany"
    log = write_log(tmp_path / "log.tsv", rows)
    emb = tmp_path / "emb.npy"
    np.save(emb, np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    db = tmp_path / "lib.db"
    code = main(["--db", str(db), "eval", "--log", str(log), "--embeddings", str(emb), "--quick", "-q"])
    _, err = capsys.readouterr()
    assert code != 0 and f"{log}:12: the count 'many' is not a number" in err and "Traceback" not in err
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM eval_runs").fetchone()[0] == 0
