"""Fault injection on the command line: nonsense arguments, closed pipes, scripts reading errors."""

from __future__ import annotations

import json
import subprocess

import pytest

from mrs_tui.cli import main
from tests.faults_helpers import child_env, cli_command, register, write_tracks


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def indexed(tmp_path, capsys, monkeypatch):
    register(monkeypatch)
    root = tmp_path / "music"
    write_tracks(root, 30)
    db = str(tmp_path / "lib.db")
    code, _, err = run(capsys, "--db", db, "index", str(root), "--backend", "counted")
    assert code == 0, err
    return db, root


@pytest.mark.parametrize("k", ["0", "-1"])
def test_suggest_refuses_a_count_below_one(indexed, capsys, k):
    db, _ = indexed
    code, out, err = run(capsys, "--db", db, "suggest", "--backend", "counted", "-k", k)
    assert code == 2 and not out and f"-k {k} asks for no suggestions" in err


def test_suggest_into_a_closed_pipe_ends_quietly(indexed):
    db, _ = indexed
    producer = subprocess.Popen(
        cli_command("--db", db, "suggest", "--backend", "counted", "--seed", "1", "-k", "25"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    producer.stdout.close()  # the reader is gone before anything is written, as `| head -n 0` would be
    _, err = producer.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert producer.returncode in (0, 141)


def test_a_search_without_match_is_not_an_empty_library(indexed, capsys):
    db, _ = indexed
    code, out, _ = run(capsys, "--db", db, "library", "--search", "zzzz")
    assert code == 0 and "no track matches 'zzzz'" in out and "empty" not in out


def test_errors_under_json_are_json_on_stderr(indexed, capsys):
    db, _ = indexed
    code, out, err = run(capsys, "--db", db, "suggest", "--backend", "counted", "--seed", "99999", "--json")
    assert code != 0 and not out
    problem = json.loads(err)
    assert problem["error"] == "no track with id 99999" and "library" in problem["hint"]


def test_a_folder_given_as_seed_is_named_a_folder(indexed, capsys):
    db, root = indexed
    code, _, err = run(capsys, "--db", db, "suggest", "--backend", "counted", "--seed", str(root))
    assert code == 2 and "is a folder" in err and "not in the library" not in err


def test_suggest_for_a_backend_without_vectors_fails(indexed, capsys):
    db, _ = indexed
    code, _, err = run(capsys, "--db", db, "suggest", "--backend", "mfcc")
    assert code != 0 and "nothing is analysed with mfcc yet" in err


def test_index_does_not_download_weights_unasked(indexed, capsys):
    import backends

    db, root = indexed
    assert backends.backend_status("musicnn").state == "weights missing"
    code, _, err = run(capsys, "--db", db, "index", str(root), "--backend", "musicnn")
    assert code == 2 and "mrs-tui backends fetch musicnn" in err and "--fetch" in err
    assert not backends.weights_dir("musicnn").exists() or not any(backends.weights_dir("musicnn").iterdir())
