"""The engine end to end on a real (generated) library: scan, analyse, suggest, record."""

from __future__ import annotations

import pytest

from mrs_tui.engine import Engine
from mrs_tui.errors import UserError
from mrs_tui.store import Store
from tests.conftest import copy_database, make_library


@pytest.fixture
def engine(indexed_library, tmp_path):
    """An engine on this test's own copy of the module's analysed library."""
    database, made = indexed_library
    store = Store.open(copy_database(database, tmp_path / "library.db"))
    engine = Engine(store)
    engine.made = made
    yield engine
    store.close()


def track_of(engine, path):
    return engine.store.track_by_path(str(path.resolve()))


def test_suggestions_for_a_seed_prefer_its_style_and_mark_new_tracks(engine):
    seed = track_of(engine, engine.made["piano"][0])
    result = engine.suggest(seed.id, k=3)
    # Nothing was ever played: the seed is cold, and so is every candidate (cold-start mode).
    assert result.recommender == "knn" and result.backend == "mfcc" and result.mode == "cold"
    assert seed.id not in {s.track.id for s in result.items}
    assert [s.track.artist for s in result.items] == ["Hammer & Felt"] * 3
    assert all(s.new for s in result.items)  # nothing played yet: all new
    assert result.items[0].score >= result.items[-1].score
    assert "selected track" in result.items[0].reason


def test_playing_updates_suggestions_at_once(engine):
    seed = track_of(engine, engine.made["techno"][0])
    first = engine.suggest(seed.id, k=5)
    played = first.items[0].track
    engine.preview_started(played.id)
    engine.preview_ended(played.id, 25.0, 30.0, finished=False)
    after = engine.suggest(seed.id, k=5)
    ids = [s.track.id for s in after.items]
    assert played.id not in ids  # already played in this session
    assert after.profile_size == 2  # the seed and the played track
    assert "1 track of this session" in after.describe()


def test_a_skip_is_recorded_when_stopped_before_half(engine):
    track = track_of(engine, engine.made["piano"][1])
    engine.preview_started(track.id)
    play = engine.preview_ended(track.id, 4.0, 30.0, finished=False)
    assert play.event == "skip"
    done = engine.preview_ended(track.id, 30.0, 30.0, finished=True)
    assert done.event == "complete"
    assert [p.event for p in engine.store.plays()] == ["play", "skip", "complete"]


def test_played_tracks_lose_the_new_badge(engine):
    seed = track_of(engine, engine.made["piano"][0])
    a = track_of(engine, engine.made["piano"][1])
    engine.record(seed.id, "play")
    engine.record(a.id, "like")
    result = engine.suggest(seed.id, k=12)
    assert a.id not in {s.track.id for s in result.items}  # played in this session, so excluded
    engine.history.gap_seconds = -1  # the next suggestion belongs to a new session
    result = engine.suggest(seed.id, k=12)
    assert result.mode == "hot"  # the seed was played: the whole library is a candidate
    badges = {s.track.id: s.new for s in result.items}
    assert badges[a.id] is False
    assert sum(badges.values()) == len(badges) - 1


def test_a_never_played_seed_gets_new_tracks_only(engine):
    played = track_of(engine, engine.made["piano"][1])
    engine.record(played.id, "play")
    engine.history.gap_seconds = -1
    fresh = track_of(engine, engine.made["piano"][0])
    result = engine.suggest(fresh.id, k=20)
    assert result.mode == "cold" and "cold start" in result.describe()
    assert played.id not in {s.track.id for s in result.items}
    assert all(s.new for s in result.items)


def test_without_seed_or_session_the_most_played_come_first(engine):
    result = engine.suggest(None, k=3)
    assert result.mode == "popular" and len(result.items) == 3  # nothing played: still something to play
    techno, piano, chip = (track_of(engine, engine.made[style][1]) for style in ("techno", "piano", "chiptune"))
    engine.history.gap_seconds = -1  # every play is a session of its own, and so is the next suggestion
    for track, times in ((piano, 3), (chip, 1), (techno, 2)):
        for _ in range(times):
            engine.record(track.id, "play")
    result = engine.suggest(None, k=3)
    assert result.mode == "popular"
    assert [s.track.id for s in result.items] == [piano.id, techno.id, chip.id]
    assert result.items[0].score > result.items[1].score > result.items[2].score


def test_unknown_seed_is_a_clear_error(engine):
    with pytest.raises(UserError, match="no track with id"):
        engine.suggest(999_999)


def test_nothing_analysed_yet_says_so(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=1, seconds=1.0)
    engine = Engine(store)
    engine.scan(root)
    result = engine.suggest(store.tracks()[0].id)
    assert result.items == [] and "index" in result.note


def test_catalogue_extends_incrementally_and_caches_to_disk(engine, tmp_path):
    catalogue = engine.catalogue()
    n = len(catalogue)
    more = make_library(tmp_path / "more", styles=("folk",), per_style=2, seconds=2.0)
    engine.scan(tmp_path / "more")
    engine.index()
    grown = engine.catalogue()
    assert grown is catalogue and len(grown) == n + 2
    assert grown.faiss_index.ntotal == n + 2
    cache = list((engine.data_folder / "indexes").glob("mfcc@1.npz"))
    assert cache, "the catalogue cache is written beside the database"
    # A track going missing removes it from the catalogue on the next refresh.
    gone = track_of(engine, more["folk"][0])
    engine.store.update_track(gone.id, status="missing")
    assert gone.id not in engine.catalogue().index_of
