"""Queue, radio and diversity rules, headless: what a listener would notice over an evening."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mrs_tui.config import Settings
from mrs_tui.diversity import DiversityFilter, DiversityRules, TrackFacts
from mrs_tui.engine import Engine
from mrs_tui.errors import UserError
from mrs_tui.queue import PlayQueue, QueueEntry
from mrs_tui.radio import Radio
from mrs_tui.store import Store
from tests.radio_library import BACKEND, build_radio_library

MINUTE = 60.0


# -- the queue ---------------------------------------------------------------------------------


def test_queue_add_reorder_remove_clear_and_move_through():
    queue = PlayQueue()
    queue.add([10, 11, 12, 13])
    assert queue.advance().track_id == 10
    assert [e.track_id for e in queue.upcoming] == [11, 12, 13]
    assert queue.move(3, -2) == 1  # 13 up two places, to just after the playing track
    assert [e.track_id for e in queue.upcoming] == [13, 11, 12]
    assert queue.move(1, -5) == 1  # cannot move above the playing track
    with pytest.raises(IndexError):
        queue.move(0, 1)  # the playing entry is not upcoming
    queue.play_next(99)
    assert queue.upcoming[0].why == "added by you (play next)"
    queue.remove(2)
    assert [e.track_id for e in queue.upcoming] == [99, 11, 12]
    assert queue.advance().track_id == 99
    assert queue.previous().track_id == 10
    assert queue.previous() is None
    queue.jump(2)
    assert queue.clear() == 1
    assert queue.advance() is None
    assert queue.current.track_id == 11


def test_removing_the_playing_entry_plays_what_followed():
    queue = PlayQueue()
    queue.add([1, 2, 3])
    queue.advance()
    queue.advance()
    queue.remove(1)
    assert queue.advance().track_id == 3


def test_entry_explanation_names_why_and_rule():
    entry = QueueEntry(5, "radio from X: knn on mfcc", "artist 1/2 in 10; rank 1 of 50", "radio")
    assert entry.explanation() == "radio from X: knn on mfcc · let through: artist 1/2 in 10; rank 1 of 50"


# -- each diversity rule ------------------------------------------------------------------------


def facts(track_id, artist="a", album="x", content_hash=None, vector=None, last_played=None):
    return TrackFacts(track_id, artist, f"{artist}|{album}", content_hash or f"h{track_id}", vector, last_played)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "context, candidate, held_by",
    [
        ([facts(1, "a", "x"), facts(2, "a", "y")], facts(3, "a", "z"), "artist"),
        ([facts(1, "b", "x")], facts(3, "b", "x"), "album"),
        ([facts(1, "b", content_hash="same")], facts(3, "c", content_hash="same"), "duplicate"),
        (
            [facts(1, "b", vector=np.array([1.0, 0.0]))],
            facts(3, "c", vector=np.array([0.999, 0.0447])),
            "near-duplicate",
        ),
        ([], facts(3, "c", last_played=NOW - 3600), "recent"),
    ],
)
def test_each_rule_holds_back_what_it_names(context, candidate, held_by):
    rules = DiversityRules(artist_cap=2, album_cap=1, window=10, near_duplicate_cosine=0.98, recent_hours=2)
    verdict = DiversityFilter(rules).check(candidate, context, NOW)
    assert (verdict.admitted, verdict.held_by) == (False, held_by)


def test_an_admitted_track_says_which_rules_it_passed():
    rules = DiversityRules(artist_cap=2, album_cap=1, window=10, near_duplicate_cosine=0.98, recent_hours=2)
    context = [facts(1, "a", "x", vector=np.array([1.0, 0.0]))]
    verdict = DiversityFilter(rules).check(
        facts(2, "a", "y", vector=np.array([0.6, 0.8]), last_played=NOW - 5 * 3600), context, NOW
    )
    assert verdict.admitted
    assert (
        verdict.rule
        == "artist 2/2 in 10, album 1/1, no copy queued, nearest queued cosine 0.60 ≤ 0.98, not played in 2 h"
    )


def test_the_window_slides():
    rules = DiversityRules(artist_cap=1, window=3)
    context = [facts(1, "a", "x"), facts(2, "b", "y"), facts(3, "c", "z")]
    assert DiversityFilter(rules).check(facts(4, "a", "w"), context, NOW).admitted  # "a" left the window
    assert not DiversityFilter(rules).check(facts(4, "b", "w"), context, NOW).admitted


def test_sampling_with_temperature_explores_and_is_reproducible():
    ranked = [(facts(i, f"artist{i}", "x"), 1.0 - i * 0.01) for i in range(20)]
    greedy = DiversityFilter(DiversityRules(top_k=20)).select(ranked, [], 5, NOW)[0]
    assert [p.facts.track_id for p in greedy] == [0, 1, 2, 3, 4]
    assert greedy[0].rule.endswith("rank 1 of 20")
    hot = DiversityRules(top_k=20, exploration="sample", temperature=1.0)
    first = DiversityFilter(hot, rng=np.random.default_rng(3)).select(ranked, [], 5, NOW)[0]
    again = DiversityFilter(hot, rng=np.random.default_rng(3)).select(ranked, [], 5, NOW)[0]
    assert [p.facts.track_id for p in first] == [p.facts.track_id for p in again]
    assert [p.facts.track_id for p in first] != [0, 1, 2, 3, 4]
    assert "drawn from the top 20 at temperature 1" in first[0].rule
    cold = DiversityRules(top_k=20, exploration="sample", temperature=0.001)
    nearly_greedy = DiversityFilter(cold, rng=np.random.default_rng(3)).select(ranked, [], 5, NOW)[0]
    assert [p.facts.track_id for p in nearly_greedy] == [0, 1, 2, 3, 4]


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="exploration"):
        DiversityRules(exploration="random")
    with pytest.raises(ValueError, match="temperature"):
        DiversityRules(exploration="sample", temperature=0)


# -- the radio on a real store, FAISS and knn -------------------------------------------------------


@pytest.fixture(scope="module")
def radio_engine(tmp_path_factory):
    store = Store.open(tmp_path_factory.mktemp("radio") / "lib.db")
    made = build_radio_library(store)
    engine = Engine(store, Settings(backend=BACKEND, recommender="knn"))
    engine.made = made
    yield engine
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def simulate(engine, rules, advances=200, *, disliked_artist="Artist 3", seed_track=None, rng_seed=0):
    """Auto-advance through a radio: the listener skips one artist and hears everything else to the end."""
    clock = Clock()
    queue = PlayQueue()
    seed = seed_track or engine.made["tracks"][0]
    radio = Radio(
        engine, queue, [seed], rules=rules, refill_below=3, batch=5, clock=clock, rng=np.random.default_rng(rng_seed)
    )
    radio.refill()
    played = []
    for _ in range(advances):
        entry = queue.advance()
        assert entry is not None, "the radio ran dry"
        track = engine.store.track(entry.track_id)
        event = "skip" if track.artist == disliked_artist else "complete"
        played.append((clock.now, entry, track))
        radio.feedback(track.id, event)
        clock.now += (0.5 if event == "skip" else 4) * MINUTE
        radio.refill()
    return played, radio


def test_two_hundred_auto_advances_keep_every_rule(radio_engine):
    rules = DiversityRules(artist_cap=2, album_cap=1, window=10, near_duplicate_cosine=0.98, recent_hours=2)
    played, radio = simulate(radio_engine, rules)
    assert len(played) == 200
    store = radio_engine.store
    catalogue = radio_engine.catalogue(BACKEND)
    centre = catalogue.vectors.mean(axis=0)  # the rule's cosines are taken around the catalogue mean
    for start in range(len(played) - 9):
        window = [t for _, _, t in played[start : start + 10]]
        assert max(Counter(t.artist for t in window).values()) <= 2
        assert max(Counter(t.album for t in window).values()) <= 1
        vectors = np.stack([catalogue.vector(t.id) for t in window]) - centre
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cosines = vectors @ vectors.T - 2 * np.eye(len(window))
        assert cosines.max() <= 0.98
        assert len({t.content_hash for t in window}) == len(window)
    last_heard: dict[str, float] = {}
    for at, _entry, track in played:
        if track.content_hash in last_heard:
            assert at - last_heard[track.content_hash] >= 2 * 3600
        last_heard[track.content_hash] = at
    seed = store.track(radio_engine.made["tracks"][0])
    for _at, entry, _track in played[1:]:
        assert entry.why.startswith(f"radio from {seed.title}: knn on {BACKEND}, score ")
        assert "artist " in entry.rule and "not played in 2 h" in entry.rule and "rank " in entry.rule
    # learning from skips: once Artist 3 was skipped twice it never came back
    artist3 = [i for i, (_, _, t) in enumerate(played) if t.artist == "Artist 3"]
    assert len(artist3) <= 2
    assert radio.skipped_artists.get("artist 3", 0) == len(artist3)


def test_without_the_rules_the_radio_is_samey(radio_engine):
    played, _radio = simulate(radio_engine, DiversityRules.off(), advances=30)
    windows = [[t for _, _, t in played[s : s + 10]] for s in range(len(played) - 9)]
    assert max(max(Counter(t.artist for t in w).values()) for w in windows) > 2


def test_near_duplicate_rips_and_copies_are_held_back(radio_engine):
    made = radio_engine.made
    rip = made["rips"][0]
    original = made["tracks"][0]  # rips[0] is a second rip of tracks[0]
    queue = PlayQueue()
    queue.add([original])
    queue.advance()
    rules = DiversityRules(
        artist_cap=10, album_cap=10, window=10, near_duplicate_cosine=0.98, recent_hours=0, top_k=100
    )
    radio = Radio(radio_engine, queue, [original], rules=rules, batch=10)
    report = radio.refill()
    assert rip not in [e.track_id for e in report.added]
    assert report.held["near-duplicate"] >= 1
    open_rules = DiversityRules(
        artist_cap=10, album_cap=10, window=10, near_duplicate_cosine=2.0, recent_hours=0, top_k=100
    )
    queue2 = PlayQueue()
    queue2.add([original])
    queue2.advance()
    assert rip in [
        e.track_id for e in Radio(radio_engine, queue2, [original], rules=open_rules, batch=10).refill().added
    ]


def test_radio_from_several_seeds_and_from_a_playlist(radio_engine):
    made = radio_engine.made["tracks"]
    seeds = [made[0], made[100]]  # two artists far apart
    queue = PlayQueue()
    radio = Radio(radio_engine, queue, seeds, rules=DiversityRules(top_k=100), batch=6)
    added = radio.refill().added
    artists = {radio_engine.store.track(e.track_id).artist for e in added}
    assert {"Artist 0", "Artist 10"} <= artists
    assert added[0].why.startswith("radio from Song 0-0-0 and 1 more: ")
    radio_engine.store.save_playlist("two", seeds)
    from_list = Radio.from_playlist(radio_engine, PlayQueue(), "two", batch=3)
    assert from_list.refill().added[0].why.startswith("radio from playlist 'two': ")


def test_refill_waits_until_few_are_left(radio_engine):
    queue = PlayQueue()
    radio = Radio(radio_engine, queue, [radio_engine.made["tracks"][0]], refill_below=3, batch=5)
    assert len(radio.refill().added) == 5
    assert radio.refill().added == []  # 5 upcoming: no refill
    for _ in range(3):
        queue.advance()
    assert len(radio.refill().added) == 5  # 2 left


def test_radio_without_seeds_is_refused(radio_engine):
    with pytest.raises(UserError, match="at least one seed"):
        Radio(radio_engine, PlayQueue(), [])


def test_rules_come_from_the_config_file_and_bad_values_name_their_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[mrs-tui]\ndiversity_artist_cap = 1\ndiversity_exploration = "sample"\nradio_batch = 8\n')
    settings = Settings.load(config)
    rules = DiversityRules.from_settings(settings)
    assert (rules.artist_cap, rules.exploration, rules.album_cap) == (1, "sample", 1)
    config.write_text('[mrs-tui]\ndiversity_exploration = "random"\n')
    with pytest.raises(UserError, match="diversity_exploration = 'random' must be one of 'greedy', 'sample'"):
        Settings.load(config)
    config.write_text("[mrs-tui]\ndiversity_window = 0\n")
    with pytest.raises(UserError, match="diversity_window = 0 must be at least 1"):
        Settings.load(config)
    config.write_text('[mrs-tui]\ndiversity_no_duplicates = "yes"\n')
    with pytest.raises(UserError, match="diversity_no_duplicates = 'yes' is not true or false"):
        Settings.load(config)
    config.write_text('[mrs-tui]\ndiversity_exploration = "sample"\ndiversity_temperature = 0.0\n')
    with pytest.raises(UserError, match="diversity_temperature must be above 0"):
        DiversityRules.from_settings(Settings.load(config))
    assert Settings.load(config, environ={"MRS_TUI_DIVERSITY_NO_DUPLICATES": "false"}).diversity_no_duplicates is False


def test_radio_takes_its_sizes_from_the_settings(radio_engine):
    radio_engine.settings.radio_batch = 4
    try:
        assert len(Radio(radio_engine, PlayQueue(), [radio_engine.made["tracks"][0]]).refill().added) == 4
    finally:
        radio_engine.settings.radio_batch = 5


def test_an_untrained_learned_recommender_falls_back_to_knn_and_says_so(radio_engine):
    radio = Radio(radio_engine, PlayQueue(), [radio_engine.made["tracks"][0]], recommender="shallow", batch=3)
    report = radio.refill()
    assert len(report.added) == 3
    assert report.note == "shallow is not trained yet: knn meanwhile"
    assert report.added[0].why.startswith("radio from Song 0-0-0: knn on mfcc")
