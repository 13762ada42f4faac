"""Fault injection on the music folder: odd names, special files, files that come and go."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mrs_tui.cli import main
from mrs_tui.engine import Engine
from mrs_tui.store import Store
from tests.faults_helpers import register, run_cli, write_tracks


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


def _index(capsys, db, root, *extra):
    code, out, err = run(capsys, "--db", db, "index", str(root), "--backend", "counted", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def _gone_at_analysis(tmp_path, capsys):
    """A library whose first track vanished between the scan and its analysis."""
    root = tmp_path / "music"
    paths = write_tracks(root, 3)
    db = str(tmp_path / "lib.db")
    aside = tmp_path / "aside.wav"
    with Store.open(db) as store:
        engine = Engine(store)
        engine.scan(root)
        shutil.move(paths[0], aside)
        engine.index(["counted"])
        assert store.track_by_path(str(paths[0])).error == "file not found"
    return db, root, paths, aside


@pytest.mark.parametrize("how", ["restored", "touched", "renamed"])
def test_a_file_missing_at_analysis_is_analysed_once_it_is_back(tmp_path, capsys, counted, how):
    db, root, paths, aside = _gone_at_analysis(tmp_path, capsys)
    target = root / "renamed.wav" if how == "renamed" else paths[0]
    shutil.move(aside, target)  # keeps the mtime: a restore from a backup
    if how == "touched":
        os.utime(target)
    _index(capsys, db, root)
    with Store.open(db) as store:
        track = store.track_by_path(str(target))
        assert track is not None and track.status == "ok" and track.error is None
        assert store.embedding(track.id, "counted", "1").vector is not None
        assert len(store.tracks()) == 3


def test_retry_failed_tries_every_failure_again(tmp_path, capsys, counted):
    from mrs_tui.store import EmbeddingRow

    root = tmp_path / "music"
    write_tracks(root, 2)
    db = str(tmp_path / "lib.db")
    _index(capsys, db, root)
    with Store.open(db) as store:
        first = store.tracks()[0]
        store.put_embeddings([EmbeddingRow(first.id, "counted", "1", None, error="RuntimeError: out of memory")])
    assert _index(capsys, db, root)["index"]["embedded"] == {"counted": 0}  # a stored failure is not retried
    data = _index(capsys, db, root, "--retry-failed")
    assert data["index"]["embedded"] == {"counted": 1}
    with Store.open(db) as store:
        assert store.embedding(first.id, "counted", "1").vector is not None


def test_a_folder_of_every_kind_of_bad_entry_is_scanned_without_hanging_and_each_is_listed(tmp_path, capsys, counted):
    from tests.conftest import write_broken_files

    root = tmp_path / "music"
    write_tracks(root, 2)
    broken = {p.name for p in write_broken_files(root / "broken")}
    odd = root / "odd"
    odd.mkdir()
    os.mkfifo(odd / "pipe.mp3")
    (odd / "dangling.flac").symlink_to(odd / "nowhere.flac")
    (odd / "loop.ogg").symlink_to(odd / "loop.ogg")
    (odd / "random.mp3").write_bytes(np.random.default_rng(3).bytes(50_000))
    (odd / "linked-folder").symlink_to(root, target_is_directory=True)  # not followed: no endless walk
    bad = broken | {"pipe.mp3", "dangling.flac", "loop.ogg", "random.mp3"}
    db = str(tmp_path / "lib.db")

    # In a child process under a timeout: a scan that blocks on the FIFO must fail the test, not hang it.
    done = run_cli("--db", db, "index", str(root), "--backend", "counted", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    data = json.loads(done.stdout)
    reported = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in data["scan"]["failed"] + data["index"]["failed"]}
    assert set(reported) == bad
    assert "FIFO" in reported["pipe.mp3"]
    assert "dangling symbolic link" in reported["dangling.flac"]
    assert "link loop" in reported["loop.ogg"]
    assert data["index"]["embedded"] == {"counted": 2}

    done = run_cli("--db", db, "library", "--status", "failed", "--json", timeout=60)
    listed = {t["path"].rsplit("/", 1)[1]: t["error"] for t in json.loads(done.stdout)}
    assert set(listed) == bad and all(listed.values())
    assert listed["pipe.mp3"] == reported["pipe.mp3"]

    again = run_cli("--db", db, "index", str(root), "--backend", "counted", "--json", timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["scan"]["added"] == 0


def test_undecodable_files_get_reasons_a_listener_understands(tmp_path):
    from mrs_tui.audio import decode_excerpt
    from mrs_tui.errors import AudioDecodeError

    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).bytes(50_000))  # starts like an MPEG frame header
    (good,) = write_tracks(tmp_path / "src", 1, seconds=6.0, ext=".flac")
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 10])
    reasons = {}
    for path in (noise, truncated):
        with pytest.raises(AudioDecodeError) as err:
            decode_excerpt(path, 2.0, 3.0)
        reasons[path.name] = str(err.value)
    assert "pipe" not in reasons["noise.mp3"] and "MP3" in reasons["noise.mp3"]
    assert reasons["cut.flac"].startswith("truncated or damaged FLAC file")
