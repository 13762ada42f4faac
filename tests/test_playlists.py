"""Playlists: saved in the store, exported to and imported from M3U/M3U8 files."""

from __future__ import annotations

import json
import shutil

import pytest

from mrs_tui.cli import main
from mrs_tui.errors import UserError
from mrs_tui.library import scan
from mrs_tui.playlists import export_playlist, import_playlist, playlist_tracks, read_m3u
from mrs_tui.store import Store
from tests.conftest import make_library


@pytest.fixture
def scanned(tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=2, seconds=1.0, formats=(".flac", ".ogg"))
    store = Store.open(tmp_path / "lib.db")
    scan(store, root)
    yield store, root
    store.close()


def test_saved_playlist_keeps_order_and_can_be_replaced_and_deleted(scanned):
    store, _root = scanned
    ids = [t.id for t in store.tracks()]
    store.save_playlist("evening", [ids[2], ids[0], ids[3]])
    assert [t.id for t in playlist_tracks(store, "evening")] == [ids[2], ids[0], ids[3]]
    store.save_playlist("evening", [ids[1]])
    assert [(p.name, p.tracks) for p in store.playlists()] == [("evening", 1)]
    assert store.rename_playlist("evening", "late")
    assert store.delete_playlist("late")
    assert store.playlists() == []
    with pytest.raises(UserError, match="no playlist named 'late'"):
        playlist_tracks(store, "late")


def test_export_writes_extinf_and_relative_paths_that_import_back(scanned, tmp_path):
    store, root = scanned
    tracks = store.tracks()
    store.save_playlist("mix", [t.id for t in tracks])
    dest = root / "lists" / "mix.m3u8"
    assert export_playlist(store, "mix", dest) == len(tracks)
    lines = dest.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    first = tracks[0]
    assert lines[1] == f"#EXTINF:{round(first.duration)},{first.artist} - {first.title}"
    assert lines[2] == "../" + str(first.path).removeprefix(str(root) + "/")
    result = import_playlist(store, dest, name="again")
    assert result.missing == []
    assert result.track_ids == [t.id for t in tracks]


def test_absolute_export(scanned, tmp_path):
    store, _root = scanned
    tracks = store.tracks()
    store.save_playlist("abs", [tracks[0].id])
    dest = tmp_path / "elsewhere" / "abs.m3u"
    export_playlist(store, "abs", dest, absolute=True)
    assert dest.read_text().splitlines()[2] == tracks[0].path


def test_import_reports_missing_entries_with_file_and_line(scanned, tmp_path):
    store, _root = scanned
    tracks = store.tracks()
    playlist = tmp_path / "party.m3u"
    playlist.write_text(
        "#EXTM3U\n"
        f"#EXTINF:1,{tracks[0].artist} - {tracks[0].title}\n"
        f"{tracks[0].path}\n"
        "\n"
        "#EXTINF:200,Nobody - Nothing\n"
        "gone/nothing.mp3\n"
        "http://radio.example/stream\n"
        f"file://{tracks[1].path.replace(' ', '%20')}\n",
        encoding="utf-8",
    )
    result = import_playlist(store, playlist)
    assert result.name == "party"
    assert result.track_ids == [tracks[0].id, tracks[1].id]
    assert result.missing == [
        f"{playlist}:6: gone/nothing.mp3: no such file",
        f"{playlist}:7: http://radio.example/stream: a stream, not a file",
    ]
    assert [t.id for t in playlist_tracks(store, "party")] == result.track_ids


def test_moved_files_are_found_by_extinf_artist_and_title(scanned, tmp_path):
    store, _root = scanned
    tracks = store.tracks()
    store.save_playlist("mix", [t.id for t in tracks[:2]])
    dest = tmp_path / "old" / "mix.m3u"
    export_playlist(store, "mix", dest)
    moved = tmp_path / "one" / "level" / "deeper"
    moved.parent.mkdir(parents=True)
    shutil.move(str(dest.parent), str(moved))  # the relative paths now point nowhere
    result = import_playlist(store, moved / "mix.m3u", name="moved")
    assert result.track_ids == [t.id for t in tracks[:2]]
    assert result.by_tags == 2


def test_windows_1252_playlist_is_read(tmp_path):
    path = tmp_path / "old.m3u"
    path.write_bytes("#EXTM3U\r\n#EXTINF:100,Sigur Rós - Hoppípolla\r\nC:\\Music\\hoppipolla.mp3\r\n".encode("cp1252"))
    (entry,) = read_m3u(path)
    assert (entry.line, entry.title, entry.seconds) == (3, "Sigur Rós - Hoppípolla", 100.0)


def test_cli_playlist_import_list_show_export_delete(scanned, tmp_path, capsys):
    store, _root = scanned
    tracks = store.tracks()
    db = str(store.path)
    m3u = tmp_path / "in.m3u"
    m3u.write_text("\n".join(t.path for t in tracks[:3]) + "\nmissing.flac\n")
    assert main(["--db", db, "playlist", "import", str(m3u), "--name", "night", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["tracks"], report["missing"]) == (3, [f"{m3u}:4: missing.flac: no such file"])
    assert main(["--db", db, "playlist", "list"]) == 0
    assert capsys.readouterr().out.strip() == "night  (3 tracks)"
    assert main(["--db", db, "playlist", "show", "night"]) == 0
    assert f"1. {tracks[0].artist} - {tracks[0].title}" in capsys.readouterr().out
    out_file = tmp_path / "night.m3u8"
    assert main(["--db", db, "playlist", "export", "night", str(out_file)]) == 0
    assert out_file.read_text().count("#EXTINF") == 3
    assert main(["--db", db, "playlist", "delete", "night"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "playlist", "show", "night"]) != 0
    assert "no playlist named 'night'" in capsys.readouterr().err
    assert main(["--db", db, "playlist", "export", "x", str(tmp_path / "x.txt")]) != 0
    assert "ends in .m3u or .m3u8" in capsys.readouterr().err
