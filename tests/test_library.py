"""Scanning a folder: tags, formats, broken files, and incremental re-scans."""

from __future__ import annotations

import os
import shutil

import pytest

from mrs_tui.errors import UserError
from mrs_tui.library import scan
from mrs_tui.store import EmbeddingRow
from tests.conftest import make_library


def test_first_scan_reads_tags_of_every_format(store, tmp_path):
    root = tmp_path / "music"
    made = make_library(root, styles=("techno", "piano"), per_style=3, seconds=2.0)
    report = scan(store, root)
    assert len(report.added) == 6 and not report.failed
    tracks = {t.path: t for t in store.tracks()}
    for paths in made.values():
        for path in paths:
            track = tracks[str(path.resolve())]
            assert track.status == "ok"
            assert track.artist in ("Four Floors", "Hammer & Felt")
            assert track.title and track.album and track.genre and track.year == "2025"
            assert track.duration == pytest.approx(2.0, abs=0.1)
    # .flac .ogg .mp3 .opus .wav all present
    assert {os.path.splitext(p)[1] for p in tracks} == {".flac", ".ogg", ".mp3", ".opus", ".wav"}


def test_m4a_is_read_when_the_decoder_can(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=1, seconds=2.0, formats=(".m4a",))
    scan(store, root)
    (track,) = store.tracks()
    assert track.status == "ok", track.error
    assert track.title == "Classical 0"
    assert track.duration == pytest.approx(2.0, abs=0.2)


def test_broken_files_are_listed_as_failed_with_a_reason(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=2, seconds=2.0, broken=True)
    report = scan(store, root)
    by_name = {os.path.basename(t.path): t for t in store.tracks()}
    assert by_name["empty.mp3"].status == "failed"
    assert "empty" in by_name["empty.mp3"].error
    assert "not an audio file" in by_name["notes.ogg"].error and "text" in by_name["notes.ogg"].error
    assert "PNG" in by_name["cover.mp3"].error
    # The truncated FLAC has a valid header: it fails when decoded (see test_indexing).
    assert by_name["truncated.flac"].status in ("ok", "failed")
    assert len(report.failed) >= 3
    assert sum(t.status == "ok" for t in by_name.values()) >= 2


def test_rescan_skips_unchanged_files(store, tmp_path, monkeypatch):
    root = tmp_path / "music"
    make_library(root, styles=("techno",), per_style=3, seconds=2.0)
    scan(store, root)
    import mrs_tui.library as library

    def fail(*args, **kwargs):
        raise AssertionError("an unchanged file was hashed")

    monkeypatch.setattr(library, "content_hash", fail)
    report = scan(store, root)
    assert report.unchanged == 3 and not report.added and not report.changed


def test_rescan_new_changed_moved_deleted(store, tmp_path):
    root = tmp_path / "music"
    made = make_library(root, styles=("techno", "piano"), per_style=2, seconds=2.0)
    scan(store, root)
    techno = made["techno"]
    piano = made["piano"]
    moved_from = piano[0]
    moved_track = store.track_by_path(str(moved_from.resolve()))
    session = store.new_session(0.0)
    store.add_play(session, moved_track.id, "play", 1.0)
    store.put_embeddings([EmbeddingRow(moved_track.id, "mfcc", "1", None, error="x")])
    changed_track = store.track_by_path(str(techno[0].resolve()))
    store.put_embeddings([EmbeddingRow(changed_track.id, "mfcc", "1", None, error="x")])

    # new file
    make_library(root / "new", styles=("chiptune",), per_style=1, seconds=2.0)
    # changed content at the same path
    other = make_library(tmp_path / "tmp", styles=("folk",), per_style=1, seconds=2.0, formats=(techno[0].suffix,))
    shutil.copyfile(other["folk"][0], techno[0])
    os.utime(techno[0], (1e9, 1e9))
    # moved (renamed into another folder)
    moved_to = root / "elsewhere" / ("renamed" + moved_from.suffix)
    moved_to.parent.mkdir()
    moved_from.rename(moved_to)
    # deleted
    techno[1].unlink()

    report = scan(store, root)
    assert len(report.added) == 1
    assert report.changed == [str(techno[0].resolve())]
    assert report.moved == [(str(moved_from.resolve()), str(moved_to.resolve()))]
    assert report.missing == [str(techno[1].resolve())]

    # The moved file kept its id, history and analysis.
    again = store.track_by_path(str(moved_to.resolve()))
    assert again.id == moved_track.id
    assert store.plays()[0].track_id == again.id
    assert store.embedding(again.id, "mfcc", "1") is not None
    # The changed file lost its stale analysis and got the new tags.
    changed = store.track(changed_track.id)
    assert changed.artist == "Six Strings West"
    assert store.embedding(changed.id, "mfcc", "1") is None
    # Missing files are kept (their history matters), just marked.
    assert store.track_by_path(str(techno[1].resolve())).status == "missing"


def test_touching_a_file_is_not_a_change(store, tmp_path):
    root = tmp_path / "music"
    made = make_library(root, styles=("piano",), per_style=1, seconds=2.0)
    scan(store, root)
    os.utime(made["piano"][0], (2e9, 2e9))
    report = scan(store, root)
    assert report.unchanged == 1 and not report.changed


def test_missing_folder_is_a_clear_error(store, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan(store, tmp_path / "nope")


def test_cancel_stops_the_scan(store, tmp_path):
    import threading

    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=3, seconds=1.0)
    cancel = threading.Event()
    cancel.set()
    report = scan(store, root, cancel=cancel)
    assert report.cancelled and store.track_count() == 0
