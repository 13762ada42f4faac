"""The track search reads a trigram index of the tracks' text: the same answers as the search run
on every track, an index that follows every write, and plans that start from the index."""

from __future__ import annotations

import os
import sqlite3

import pytest
import sqlite_utils

from mrs_tui.store import MIGRATIONS, Store
from mrs_tui.store.bulk import BulkTrack, write_bulk_tracks
from mrs_tui.store.records import search_matches
from tests.test_scale_queries import Recorder, assert_no_full_scan

NOT_UTF8_PATH = os.fsdecode(b"/m/caf\xe9 Lyon.flac")  # stored as a BLOB

TRACKS = [
    ("/m/Björk/Homogenic/01 Hunter.flac", {"title": "Hunter", "artist": "Björk", "album": "Homogenic"}),
    ("/m/tokyo/東京都.flac", {"title": "東京", "artist": "Shiina Ringo", "genre": "J-Pop"}),
    ("/m/quotes.flac", {"title": 'He said "hi" AND left', "artist": "NEAR(x)", "genre": "rock*"}),
    ("/m/Istanbul.flac", {"title": "İstanbul", "artist": "\u212aelvin"}),  # lower() gives two characters, "k"
    ("/m/georgia.flac", {"title": "თბილისი".upper()}),  # upper case letters newer than many case tables
    (NOT_UTF8_PATH, {"title": None, "artist": "Édith Piaf"}),
    ("/m/plain/Some Song.mp3", {"title": None}),
    ("/m/x/ab.ogg", {"title": "ab", "artist": "AB", "album": "xyz"}),
]
QUERIES = [
    "björk hunter",
    "BJÖRK",
    "HOMOGENIC björk",
    "homogenic ringo",  # words in two tracks, none in both
    "東京",  # two characters: not indexed
    "東京都",  # in the path only
    "some song",
    "mp3",
    "/m/plain",
    '"hi"',
    '"',
    'said "hi',
    "and near(x) rock*",
    "NOT",
    "i̇st",
    "istanbul",
    "kelvin",
    "თბილისი",
    "caf\udce9",
    "caf\udce9 lyon piaf",
    "édith",
    "ab",
    "ab xyz",
    "a b",
    "flac",
    "nothing-like-this",
    "",
    "   ",
]


def _store(path) -> Store:
    store = Store.open(path)
    for track_path, tags in TRACKS:
        store.add_track(track_path, **tags)
    return store


def _scanned(store: Store, search: str) -> list[int]:
    return [t.id for t in store.tracks() if search_matches(search, t.title, t.artist, t.album, t.genre, t.path)]


def _indexed_ids(store: Store, word: str) -> list[int]:
    """The rows the index holds `word` for, read from the index alone."""
    phrase = '"' + word.replace('"', '""') + '"'
    rows = store.conn.execute("SELECT rowid FROM track_search WHERE track_search MATCH ? ORDER BY rowid", [phrase])
    return [row[0] for row in rows]


@pytest.mark.parametrize("search", QUERIES)
def test_the_index_finds_what_the_search_over_every_track_finds(tmp_path, search):
    store = _store(tmp_path / "library.db")
    expected = _scanned(store, search)
    assert [t.id for t in store.tracks(search=search)] == expected
    assert [t.id for t in store.track_page(search=search, limit=100)] == expected
    assert [t.id for t in store.tracks(status="ok", search=search)] == expected


def test_the_queries_find_what_they_should():
    """The equality above is worth something only if the queries find things."""
    found = {
        "björk hunter": 1,
        "東京都": 1,
        '"hi"': 1,
        "kelvin": 1,
        "თბილისი": 1,
        "caf\udce9 lyon piaf": 1,
        "flac": 6,
    }
    memory = Store.memory()
    for track_path, tags in TRACKS:
        memory.add_track(track_path, **tags)
    for search, count in found.items():
        assert len(memory.tracks(search=search)) == count, search


def test_the_index_follows_inserts_tag_updates_and_deletes(tmp_path):
    store = _store(tmp_path / "library.db")
    hunter = store.track_by_path(TRACKS[0][0]).id
    assert _indexed_ids(store, "hunter") == [hunter]

    store.update_track(hunter, title="Jóga")
    assert _indexed_ids(store, "hunter") == [hunter]  # still in the path
    store.update_track(hunter, path="/m/Björk/Homogenic/02 Joga.flac")
    assert _indexed_ids(store, "hunter") == []
    assert _indexed_ids(store, "jóga") == [hunter]
    assert [t.id for t in store.tracks(search="JÓGA")] == [hunter]

    store.update_track(hunter, path=os.fsdecode(b"/m/j\xf3ga.flac"))  # the path becomes a BLOB
    assert [t.id for t in store.tracks(search="j\udcf3ga")] == [hunter]

    with store.write() as conn:
        conn.execute("DELETE FROM tracks WHERE id = ?", [hunter])
    assert _indexed_ids(store, "jóga") == []
    assert store.tracks(search="jóga") == []

    # The bulk writers insert with executemany: the triggers see every row.
    ids = write_bulk_tracks(
        store, [BulkTrack(f"/bulk/{i}.flac", f"Bulk Title {i}", "Bulk Artist") for i in range(50)], {}
    )
    assert _indexed_ids(store, "bulk artist") == ids
    assert [t.id for t in store.tracks(search="bulk title 7")] == _scanned(store, "bulk title 7")
    assert len(store.tracks(search="bulk title 7")) == 5  # 7, 17, 27, 37, 47


def test_a_search_with_a_long_word_starts_from_the_index(tmp_path):
    store = _store(tmp_path / "library.db")
    with Recorder(store) as searching:
        store.tracks(search="björk Hunter")
        store.tracks(status=["ok", "failed"], search="homogenic")
        first = store.track_page(search="flac", limit=2)
        store.track_page(first[-1], search="flac ab", limit=2)
    plans = searching.plans()
    assert len(plans) == 4
    for sql, lines in plans.items():
        assert lines[0].startswith("SCAN track_search VIRTUAL TABLE"), (sql, lines)
        assert not any(line.startswith("SCAN tracks") for line in lines), (sql, lines)
    assert_no_full_scan(plans)

    with Recorder(store) as short:
        store.tracks(search="ab 東京")
    (lines,) = short.plans().values()
    assert not any("track_search" in line for line in lines), "words under three characters use no trigram index"


def test_a_database_from_before_the_index_gets_its_tracks_indexed(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:9]:
        migration(sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version=9")
    conn.executemany(
        "INSERT INTO tracks (path, title, artist, status, added_at, updated_at) VALUES (?, ?, ?, 'ok', 1, 1)",
        [
            ("/m/one.flac", "Roxanne", "The Police"),
            (os.fsencode(NOT_UTF8_PATH), "Hymne", None),
            ("/m/three.flac", "Message in a Bottle", "The Police"),
        ],
    )
    conn.close()

    store = Store.open(path)
    assert store.schema_version == len(MIGRATIONS)
    ids = {t.title: t.id for t in store.tracks()}
    assert _indexed_ids(store, "the police") == [ids["Roxanne"], ids["Message in a Bottle"]]
    assert _indexed_ids(store, "lyon") == [ids["Hymne"]]
    assert [t.id for t in store.tracks(search="caf\udce9 hymne")] == [ids["Hymne"]]
