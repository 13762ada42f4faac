"""The local play history: events grouped into listening sessions.

A session is a run of events with no gap longer than `gap_minutes` (30 by default, as in
session-based recommendation work); the next event after a longer pause opens a new one.
Sessions are the *contexts* recommenders train on in the app (users are the contexts of
research logs).

A (session, track) pair is a positive interaction when the track was played, completed or
liked there and not skipped or disliked afterwards in the same session; a preview stopped
before half its length is recorded as a skip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from mrs_tui.store import PLAY_EVENTS, Play, Store
from recommenders.base import Interactions

NEGATIVE_EVENTS = ("skip", "dislike")


@dataclass
class HistoryData:
    """Interactions in recommender form plus the id maps needed to go back."""

    interactions: Interactions
    session_ids: list[int]


class History:
    def __init__(
        self,
        store: Store,
        *,
        gap_minutes: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.gap_seconds = gap_minutes * 60.0
        self.clock = clock
        self.hot_tracks = HotTracks(store)

    def current_session(self, at: float | None = None, *, create: bool = True) -> int | None:
        at = self.clock() if at is None else at
        latest = self.store.latest_session()
        if latest is not None and at - latest[2] <= self.gap_seconds:
            return latest[0]
        return self.store.new_session(at) if create else None

    def record(self, track_id: int, event: str, *, position_s: float | None = None, at: float | None = None) -> Play:
        if event not in PLAY_EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(PLAY_EVENTS)}")
        at = self.clock() if at is None else at
        session_id = self.current_session(at)
        play_id = self.store.add_play(session_id, track_id, event, at, position_s)
        return Play(play_id, session_id, track_id, event, at, position_s)

    def session_plays(self, session_id: int | None = None) -> list[Play]:
        if session_id is None:
            session_id = self.current_session(create=False)
            if session_id is None:
                return []
        return self.store.plays(session_id=session_id)

    def session_tracks(self, session_id: int | None = None) -> list[int]:
        """Positive tracks of a session in the order first played (the KNN profile)."""
        return positive_sequence(self.session_plays(session_id))

    def session_seen(self, session_id: int | None = None) -> set[int]:
        """Every track with any event in the session: not worth suggesting again right away."""
        return {p.track_id for p in self.session_plays(session_id)}

    def data(self, item_index: Mapping[int, int]) -> HistoryData:
        """All positive (session, track) pairs whose track is in `item_index` (track id -> item)."""
        # Plain rows in time order, no record objects: this runs after every play while knn
        # serves, so it must cost the history's length and little per play.
        by_session: dict[int, list[tuple[int, str, float]]] = {}
        for session_id, track_id, event, at in self.store.play_rows():
            by_session.setdefault(session_id, []).append((track_id, event, at))
        session_ids: list[int] = []
        contexts, items, stamps = [], [], []
        negative_contexts, negative_items = [], []
        for session_id, plays in by_session.items():
            first_at, verdict = first_and_last(plays)
            rows = [(item_index[t], at) for t, at in first_at.items() if verdict[t] and t in item_index]
            if not rows:
                continue  # a session of skips only says what was not wanted, but not against what
            context = len(session_ids)
            session_ids.append(session_id)
            for item, at in rows:
                contexts.append(context)
                items.append(item)
                stamps.append(at)
            for track in first_at:
                if not verdict[track] and track in item_index:
                    negative_contexts.append(context)
                    negative_items.append(item_index[track])
        interactions = Interactions(
            np.asarray(contexts, np.int64),
            np.asarray(items, np.int64),
            np.asarray(stamps, np.float64),
            n_contexts=len(session_ids),
            n_items=len(item_index),
            negative_contexts=np.asarray(negative_contexts, np.int64),
            negative_items=np.asarray(negative_items, np.int64),
        )
        return HistoryData(interactions, session_ids)


class HotTracks:
    """The tracks with a positive (session, track) pair, kept up to date play by play.

    What knn's hot pool needs after every play: a full pass over the history per play would cost
    its length each time. New plays (by id) are read alone and only the pairs they touch are
    looked at again (a listening import may add plays older than the newest, so a pair's verdict
    is read back from the store, not assumed from the new play); a deletion anywhere (the count
    of plays no longer adds up) starts over from the whole history.

    Each update that changes something is a new `version`, and `changed_since` tells which tracks
    went hot or cold since an earlier one: a hot mask follows a play by the tracks it flipped,
    not by comparing two sets of every track ever played.
    """

    KEPT_VERSIONS = 64  # how far back `changed_since` can answer

    def __init__(self, store: Store) -> None:
        self.store = store
        self._positive: set[tuple[int, int]] = set()
        self._pairs_of: dict[int, int] = {}  # track -> positive pairs it is in
        self._last_id = 0
        self._count = 0
        self.version = 0
        self._reset_at = 0  # the version of the last pass over the whole history
        self._flips: list[tuple[int, set[int]]] = []  # (version, tracks flipped by that update)

    def current(self) -> set[int]:
        """The hot tracks now (a copy)."""
        self.update()
        return set(self._pairs_of)

    def is_hot(self, track_id: int) -> bool:
        return track_id in self._pairs_of

    def changed_since(self, version: int) -> set[int] | None:
        """Tracks that went hot or cold after `version` (as of the last update); None when that is
        too far back or before a pass over the whole history (then start from `current`)."""
        if version < self._reset_at or (self._flips and version < self._flips[0][0] - 1):
            return None
        return set().union(*(tracks for at, tracks in self._flips if at > version))

    def update(self) -> int:
        """Catch up with the plays; returns the version."""
        count, last_id = self.store.play_totals()
        if self._count and last_id >= self._last_id:
            new = self.store.plays(since_id=self._last_id)
            if count == self._count + len(new):  # nothing was deleted: the new plays are all that changed
                touched = {(p.session_id, p.track_id) for p in new}
                flipped = {
                    pair[1]
                    for pair, event in self.store.last_events(touched).items()
                    if self._set(pair, event not in NEGATIVE_EVENTS)
                }
                self._last_id, self._count = max([self._last_id, *(p.id for p in new)]), count
                if flipped:
                    self.version += 1
                    self._flips = [*self._flips[-(self.KEPT_VERSIONS - 1) :], (self.version, flipped)]
                return self.version
        if count == self._count == 0:
            return self.version  # no plays then, none now
        self._positive.clear()
        self._pairs_of.clear()
        for session_id, track_id, event, _at in self.store.play_rows():  # in time order: the last verdict stays
            self._set((session_id, track_id), event not in NEGATIVE_EVENTS)
        self._last_id, self._count = last_id, count
        self.version += 1
        self._reset_at, self._flips = self.version, []
        return self.version

    def _set(self, pair: tuple[int, int], positive: bool) -> bool:
        """Record a pair's verdict; whether its track went hot or cold."""
        if positive == (pair in self._positive):
            return False
        track = pair[1]
        if positive:
            self._positive.add(pair)
            self._pairs_of[track] = self._pairs_of.get(track, 0) + 1
            return self._pairs_of[track] == 1
        self._positive.discard(pair)
        self._pairs_of[track] -= 1
        if not self._pairs_of[track]:
            del self._pairs_of[track]
            return True
        return False


def first_and_last(events: Iterable[tuple[int, str, float]]) -> tuple[dict[int, float], dict[int, bool]]:
    """For (track, event, at) in time order: when each track was first heard (in that order), and
    whether its last event is positive."""
    first_at: dict[int, float] = {}
    verdict: dict[int, bool] = {}
    for track_id, event, at in events:
        first_at.setdefault(track_id, at)
        verdict[track_id] = event not in NEGATIVE_EVENTS
    return first_at, verdict


def _verdicts(plays: list[Play]) -> tuple[dict[int, float], dict[int, bool]]:
    return first_and_last((p.track_id, p.event, p.at) for p in sorted(plays, key=lambda p: (p.at, p.id)))


def positive_sequence(plays: list[Play]) -> list[int]:
    """Tracks whose last verdict in these plays is positive, ordered by first play."""
    first_at, verdict = _verdicts(plays)
    return [t for t in first_at if verdict[t]]


def negative_tracks(plays: list[Play]) -> list[int]:
    """Tracks whose last verdict in these plays is a skip or a dislike, ordered by first event."""
    first_at, verdict = _verdicts(plays)
    return [t for t in first_at if not verdict[t]]
