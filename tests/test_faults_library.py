"""Fault injection on the music folder: odd names, special files, files that come and go."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from mrs_tui.cli import main
from mrs_tui.store import Store
from tests.faults_helpers import register, write_tracks


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def counted(monkeypatch):
    register(monkeypatch)


def test_a_file_name_that_is_not_utf8_is_indexed_stored_faithfully_and_shown_readably(tmp_path, capsys, counted):
    root = tmp_path / "music"
    (good,) = write_tracks(root, 1, ext=".flac")
    latin1 = os.fsencode(root) + b"/caf\xe9.flac"
    shutil.copy(good, latin1)
    write_tracks(root / "later", 1, ext=".flac", seed=3)  # sorted after the odd name
    db = str(tmp_path / "lib.db")

    code, out, err = run(capsys, "--db", db, "index", str(root), "--backend", "counted", "--json")
    assert code == 0, err
    assert json.loads(out)["index"]["embedded"] == {"counted": 3}

    with Store.open(db) as store:
        odd = next(t for t in store.tracks() if os.fsencode(t.path) == latin1)
        assert odd.status == "ok" and os.path.exists(odd.path)  # the stored path opens the file
        assert store.track_by_path(odd.path).id == odd.id
        assert store.embedding(odd.id, "counted", "1").vector is not None

    code, out, err = run(capsys, "--db", db, "index", str(root), "--backend", "counted", "--json")
    assert code == 0, err
    assert json.loads(out)["scan"]["unchanged"] == 3  # the odd name is recognised, not re-added

    code, out, err = run(capsys, "--db", db, "library")
    assert code == 0, err
    assert "caf\\xe9" in out
