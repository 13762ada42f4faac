"""What a screen or a command shows costs the rows it shows: index plans, keyset pages, the shared search."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from mrs_tui.cli import main as cli_main
from mrs_tui.engine import Engine
from mrs_tui.store import EmbeddingRow, Store
from mrs_tui.store.bulk import BulkPlay, BulkTrack, write_bulk_history


def _library(path) -> Store:
    store = Store.open(path)
    rng = np.random.default_rng(0)
    tracks = [BulkTrack(f"/m/a{i % 7}/{i:04d}.flac", f"t{i}", f"artist {i % 7}", "rock") for i in range(400)]
    plays = [
        BulkPlay(s, int(rng.integers(0, 400)), "complete", 1_000.0 + s * 5000 + n) for s in range(30) for n in range(6)
    ]
    write_bulk_history(
        store, tracks, {("mfcc", "1"): rng.normal(size=(400, 8)).astype(np.float32)}, plays, source="app"
    )
    return store


class Recorder:
    """Every statement a store runs, with its parameters expanded (sqlite3's trace callback)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[str] = []

    def __enter__(self) -> Recorder:
        self.store.conn.set_trace_callback(self.statements.append)
        return self

    def __exit__(self, *exc) -> None:
        self.store.conn.set_trace_callback(None)

    def plans(self) -> dict[str, list[str]]:
        raw = sqlite3.connect(self.store.path)
        from mrs_tui.store.records import search_matches

        raw.create_function("track_matches", 6, search_matches, deterministic=True)
        out = {}
        for sql in self.statements:
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                out[sql] = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}")]
        raw.close()
        return out


def _full_text_match(line: str) -> bool:
    return "VIRTUAL TABLE INDEX" in line and ":M" in line


def assert_no_full_scan(plans: dict[str, list[str]]) -> None:
    assert plans, "no query was recorded"
    for sql, lines in plans.items():
        for line in lines:
            # A full-text MATCH (":M" in the plan's index string) reads the index entries of its words.
            # A constant row is no table; `tracks_unavailable` holds only the tracks that are not ok.
            small = "json_each" in line or "CONSTANT ROW" in line or "INDEX tracks_unavailable" in line
            if line.startswith("SCAN") and not small and not _full_text_match(line):
                # Walking an index in order under a LIMIT reads only the rows shown; any other SCAN reads all.
                bounded = ("USING INDEX" in line or "USING COVERING INDEX" in line) and " LIMIT " in sql
                assert bounded, f"{line!r} in {sql}"


def test_history_details_and_page_queries_use_indexes(tmp_path, monkeypatch, capsys):
    db = tmp_path / "library.db"
    store = _library(db)
    engine = Engine(store)
    track = store.track_page(limit=1)[0]
    with Recorder(store) as details:
        store.track(track.id)
        engine.track_facts(track.id)
    with Recorder(store) as page:
        first = store.track_page(limit=50)
        store.track_page(first[-1], limit=50)
    with Recorder(store) as recent:
        for session in store.latest_sessions(5):
            plays = store.plays(session_id=session["id"])
            store.tracks(ids=[p.track_id for p in plays])
        engine.history.current_session(create=False)
    for recorder in (details, page, recent):
        assert_no_full_scan(recorder.plans())


def test_history_show_reads_only_the_sessions_it_lists(tmp_path, monkeypatch, capsys):
    db = tmp_path / "library.db"
    _library(db).close()
    statements: list[str] = []
    connect = Store._connect

    def traced(path):
        conn = connect(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(Store, "_connect", staticmethod(traced))
    assert cli_main(["history", "show", "--limit", "2", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.count("session ") == 2 and "6 events" in out
    recorder = Recorder(Store.open(db))
    recorder.statements = [s for s in statements if "sqlite_master" not in s and "PRAGMA" not in s]
    assert_no_full_scan(recorder.plans())


def test_pages_walk_the_whole_library_in_its_order(tmp_path):
    store = Store.open(tmp_path / "library.db")
    odd_path = os.fsdecode(b"/m/caf\xe9.flac")  # not UTF-8: stored as a BLOB
    for path, tags in [
        ("/m/1.flac", {"artist": None, "album": None, "title": None}),
        ("/m/2.flac", {"artist": "B", "album": "", "title": "x"}),
        ("/m/3.flac", {"artist": "B", "album": None, "title": "y"}),
        ("/m/4.flac", {"artist": "", "album": "a", "title": ""}),
        ("/m/5.flac", {"artist": "A", "album": "a", "title": None}),
        ("/m/6.flac", {"artist": "A", "album": "a", "title": "t"}),
        ("/m/7.flac", {"artist": "A", "album": "a", "title": "t"}),
        (odd_path, {"artist": "A", "album": "a", "title": "t"}),
        ("/m/8.flac", {"artist": None, "album": "z", "title": "q"}),
    ]:
        store.add_track(path, **tags)
    everything = store.tracks()
    pages, after = [], None
    while True:
        page = store.track_page(after, limit=2)
        if not page:
            break
        pages += page
        after = page[-1]
    assert [t.id for t in pages] == [t.id for t in everything]
    assert [t.path for t in everything[:3]] == ["/m/4.flac", "/m/5.flac", "/m/6.flac"]
    assert everything[-2].path == "/m/1.flac"  # no artist: last, a missing album before a known one


def test_library_search_in_the_store_is_the_apps_filter(tmp_path):
    store = Store.open(tmp_path / "library.db")
    store.add_track("/m/Étoile.flac", title="Nuit Blanche", artist="Élodie")
    store.add_track("/m/other.flac", title="Day", artist="Bob", genre="Jazz")
    store.add_track(os.fsdecode(b"/m/\xe9t\xe9.flac"), title=None)
    for search in ["élodie nuit", "ÉTOILE", "jazz bob", "bob nuit", "", "flac", "t\udce9"]:
        expected = [t.id for t in store.tracks() if t.matches(search)]
        assert [t.id for t in store.tracks(search=search)] == expected, search
    assert len(store.tracks(search="élodie nuit")) == 1


@pytest.mark.parametrize("limit", [1, 3])
def test_history_show_limit_lists_the_latest_sessions_oldest_first(tmp_path, capsys, limit):
    db = tmp_path / "library.db"
    store = _library(db)
    expected = [s["id"] for s in store.sessions()][-limit:]
    assert [s["id"] for s in store.latest_sessions(limit)] == expected
    assert cli_main(["history", "show", "--limit", str(limit), "--db", str(db), "--json"]) == 0
    import json

    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == expected


def test_the_app_shows_a_big_librarys_first_page_then_the_whole_list(tmp_path, monkeypatch):
    import asyncio

    from mrs_tui.tui import app as app_module
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from tests.test_tui import SIZE, RecordingPlayer, messages_of, wait_for

    db = tmp_path / "library.db"
    _library(db).close()
    monkeypatch.setattr(app_module, "FIRST_PAGE_ROWS", 50)

    async def scenario():
        log = []
        app = create_app(db_path=db, player=RecordingPlayer(), index_on_start=False)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.LibraryLoaded, log))
            ready = messages_of(msg.EngineReady, log)[0]
            everything = Store.open(db).tracks()
            assert not ready.complete and [t.id for t in ready.tracks] == [t.id for t in everything[:50]]
            assert len(messages_of(msg.LibraryLoaded, log)[-1].tracks) == 400
            await wait_for(pilot, lambda: app.main.library.row_count == 400)
            assert "400 tracks" in str(app.main.query_one("#library-summary").render())

    asyncio.run(scenario())


def test_embedding_counts_come_from_the_index_and_follow_every_write(tmp_path):
    """The compare screen asks for them on every opening: no read of the vectors, and never stale."""
    db = tmp_path / "library.db"
    store = _library(db)
    with Recorder(store) as counting:
        assert store.embedding_counts() == {("mfcc", "1"): (400, 0)}
    plans = counting.plans()
    assert any("INDEX embeddings_stored" in line for lines in plans.values() for line in lines), plans
    with Recorder(store) as again:
        store.embedding_counts()
    assert not [s for s in again.statements if "FROM embeddings" in s], "a second ask reads the table again"

    other = Store.open(db)  # an indexer in another process writes a vector and a failure
    track_id = other.track_page(limit=1)[0].id
    other.conn.execute(
        "INSERT INTO embeddings (track_id, backend, version, dim, vector, created_at) VALUES (?, 'musicnn', 'x', 2, ?, 0)",
        [track_id, np.zeros(2, np.float32).tobytes()],
    )
    other.conn.execute(
        "INSERT INTO embeddings (track_id, backend, version, dim, vector, created_at) VALUES (?, 'musicnn', 'y', 0, NULL, 0)",
        [track_id],
    )
    other.conn.commit()
    assert store.embedding_counts() == {("mfcc", "1"): (400, 0), ("musicnn", "x"): (1, 0), ("musicnn", "y"): (0, 1)}
    store.delete_embeddings(track_id)  # this connection's own write
    assert store.embedding_counts() == {("mfcc", "1"): (399, 0)}


def test_counting_a_models_searchable_vectors_reads_no_vector_and_no_ok_track(tmp_path):
    """A catalogue counts them after every change to the vectors: at a million tracks, reading
    each row (or each track's status) costs a second."""
    db = tmp_path / "library.db"
    store = _library(db)
    ids = [t.id for t in store.track_page(limit=3)]
    store.update_track(ids[0], status="missing")
    store.put_embeddings([EmbeddingRow(ids[1], "mfcc", "1", None, error="decode failed")])
    with Recorder(store) as counting:
        assert store.vector_count("mfcc", "1") == 398
    lines = [line for lines in counting.plans().values() for line in lines]
    scans = [line for line in lines if line.startswith("SCAN") and "CONSTANT ROW" not in line]
    assert scans == ["SCAN t USING INDEX tracks_unavailable"], lines
    assert any("embeddings_stored" in line and "<expr>=?" in line for line in lines), lines
    assert store.vector_count("mfcc", "1") == len(store.searchable_track_ids("mfcc", "1"))


def test_a_catalogue_catching_up_reads_only_what_changed(tmp_path):
    """After a vector is written or a track goes missing, a refresh searches the change indexes:
    it reads no other vector (at a million tracks a scan of them all takes seconds)."""
    from mrs_tui.catalogue import Catalogue

    db = tmp_path / "library.db"
    store = _library(db)
    catalogue = Catalogue.load(store, "mfcc", "1")
    ids = [t.id for t in store.track_page(limit=2)]
    store.put_embeddings([EmbeddingRow(ids[0], "mfcc", "1", np.ones(catalogue.dim, np.float32))])
    store.update_track(ids[1], status="missing")
    with Recorder(store) as refreshing:
        catalogue.refresh(store)
    assert len(catalogue) == 399 and np.array_equal(catalogue.vector(ids[0]), np.ones(catalogue.dim))
    plans = refreshing.plans()
    assert_no_full_scan(plans)
    lines = [line for lines in plans.values() for line in lines]
    assert any("embeddings_change" in line for line in lines) and any("tracks_change" in line for line in lines)
