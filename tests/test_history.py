"""Play history: sessions split by gaps, positive interactions, skips and dislikes."""

from __future__ import annotations

import numpy as np

from mrs_tui.history import History


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tracks(store, n):
    return [store.add_track(f"/m/{i}.flac", status="ok") for i in range(n)]


def test_a_long_gap_starts_a_new_session(store):
    clock = Clock()
    history = History(store, gap_minutes=30, clock=clock)
    a, b, c = tracks(store, 3)
    first = history.record(a, "play")
    clock.t += 29 * 60
    second = history.record(b, "play")
    clock.t += 31 * 60
    third = history.record(c, "play")
    assert first.session_id == second.session_id != third.session_id
    assert len(store.sessions()) == 2


def test_session_tracks_follow_skips_and_dislikes(store):
    clock = Clock()
    history = History(store, clock=clock)
    a, b, c, d = tracks(store, 4)
    for track, event in ((a, "play"), (b, "play"), (b, "skip"), (c, "like"), (d, "play"), (d, "dislike")):
        clock.t += 10
        history.record(track, event)
    assert history.session_tracks() == [a, c]
    assert history.session_seen() == {a, b, c, d}


def test_interactions_are_sessions_by_tracks_in_time_order(store):
    clock = Clock()
    history = History(store, clock=clock)
    a, b, c = tracks(store, 3)
    for track in (b, a):
        clock.t += 5
        history.record(track, "play")
    clock.t += 3600
    history.record(c, "complete")
    history.record(a, "skip")
    index = {a: 0, b: 1, c: 2}
    data = history.data(index)
    inter = data.interactions
    assert inter.n_contexts == 2 and len(data.session_ids) == 2
    seqs = inter.sequences()
    assert seqs[0].tolist() == [1, 0]  # b then a
    assert seqs[1].tolist() == [2]  # a was skipped in the second session
    np.testing.assert_array_equal(inter.hot_mask(), [True, True, True])


def test_tracks_outside_the_catalogue_are_left_out(store):
    history = History(store)
    a, b = tracks(store, 2)
    history.record(a, "play")
    history.record(b, "play")
    data = history.data({b: 0})
    assert data.interactions.items.tolist() == [0]
