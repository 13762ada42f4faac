"""Writing a whole generated history at once (tests, benchmarks, the demo): bulk inserts.

`Store.add_track`, `put_embeddings` and `add_play` take one lock and one transaction per call,
which is right for the app and far too slow for a 50k-play history; this writes tracks,
vectors, sessions and plays in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BulkTrack:
    path: str
    title: str | None = None
    artist: str | None = None
    genre: str | None = None
    album: str | None = None
    year: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class BulkPlay:
    session: int  # caller's session number; sessions get database ids in order of their first play
    item: int  # position in the track list
    event: str
    at: float


def write_bulk_history(
    store,
    tracks: Sequence[BulkTrack],
    vectors: Mapping[tuple[str, str], np.ndarray],
    plays: Sequence[BulkPlay],
    *,
    source: str = "synthetic",
) -> list[int]:
    """Insert `tracks` (status ok), one vector per track for each (backend, version) in `vectors`,
    and `plays` grouped into their sessions. Returns the track id of each of `tracks`."""
    with store.write():
        ids = write_bulk_tracks(store, tracks, vectors)
        write_bulk_plays(store, plays, ids, source=source)
    return ids


def write_bulk_tracks(store, tracks: Sequence[BulkTrack], vectors: Mapping[tuple[str, str], np.ndarray]) -> list[int]:
    """Insert `tracks` (status ok) with row i of each (backend, version) matrix as track i's vector.

    One transaction per call: a caller writing a million tracks passes them in chunks, so the
    journal is checkpointed between chunks instead of growing to the size of the database.
    """
    now = time.time()
    with store.write() as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) FROM tracks").fetchone()[0] + 1
        ids = [first + i for i in range(len(tracks))]
        conn.executemany(
            "INSERT INTO tracks (id, path, title, artist, genre, album, year, duration, status, added_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?, ?)",
            [
                (ids[i], t.path, t.title, t.artist, t.genre, t.album, t.year, t.duration, now, now)
                for i, t in enumerate(tracks)
            ],
        )
        for (backend, version), matrix in vectors.items():
            rows = np.ascontiguousarray(matrix, dtype="<f4")
            conn.executemany(
                "INSERT INTO embeddings (track_id, backend, version, dim, vector, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(ids[i], backend, version, rows.shape[1], rows[i].tobytes(), now) for i in range(len(ids))],
            )
    return ids


def write_bulk_plays(store, plays: Sequence[BulkPlay], track_ids: Sequence[int], *, source: str = "synthetic") -> None:
    """Insert `plays` (their `item` indexes `track_ids`) grouped into new sessions, in one transaction."""
    bounds: dict[int, list[float]] = {}  # session -> [first play, last play]
    for play in plays:
        span = bounds.setdefault(play.session, [play.at, play.at])
        span[0], span[1] = min(span[0], play.at), max(span[1], play.at)
    with store.write() as conn:
        first_session = conn.execute("SELECT coalesce(max(id), 0) FROM sessions").fetchone()[0] + 1
        by_start = sorted(bounds, key=lambda session: bounds[session][0])
        session_ids = {session: first_session + n for n, session in enumerate(by_start)}
        conn.executemany(
            "INSERT INTO sessions (id, started_at, last_at, source) VALUES (?, ?, ?, ?)",
            [(session_ids[s], begin, end, source) for s, (begin, end) in bounds.items()],
        )
        conn.executemany(
            "INSERT INTO plays (session_id, track_id, event, at) VALUES (?, ?, ?, ?)",
            [(session_ids[p.session], track_ids[p.item], p.event, p.at) for p in plays],
        )
