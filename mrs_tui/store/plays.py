"""Listening sessions and the plays, skips, likes and dislikes in them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

import sqlite_utils

from mrs_tui.store.connection import LockedConnection
from mrs_tui.store.records import PLAY_EVENTS, POSITIVE_EVENTS, Play


class PlaysMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def latest_session(self, source: str = "app") -> tuple[int, float, float] | None:
        # Only sessions of `source`: the app must not append its plays to an imported session.
        row = self.conn.execute(
            "SELECT id, started_at, last_at FROM sessions WHERE source = ? ORDER BY last_at DESC, id DESC LIMIT 1",
            [source],
        ).fetchone()
        return tuple(row) if row else None

    def new_session(self, at: float, source: str = "app") -> int:
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO sessions (started_at, last_at, source) VALUES (?, ?, ?)", [at, at, source]
            )
        return int(cursor.lastrowid)

    def add_play(self, session_id: int, track_id: int, event: str, at: float, position_s: float | None = None) -> int:
        if event not in PLAY_EVENTS:
            raise ValueError(f"unknown play event {event!r}")
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO plays (session_id, track_id, event, at, position_s) VALUES (?, ?, ?, ?, ?)",
                [session_id, track_id, event, at, position_s],
            )
            conn.execute("UPDATE sessions SET last_at = max(last_at, ?) WHERE id = ?", [at, session_id])
        return int(cursor.lastrowid)

    def plays(
        self,
        *,
        session_id: int | None = None,
        events: Sequence[str] | None = None,
        since_id: int = 0,
    ) -> list[Play]:
        clauses, params = ["id > ?"], [since_id]
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        if events is not None:
            clauses.append(f"event IN ({', '.join('?' for _ in events)})")
            params += list(events)
        sql = f"SELECT * FROM plays WHERE {' AND '.join(clauses)} ORDER BY at, id"
        return [Play(**row) for row in self.db.query(sql, params)]

    def play_rows(self) -> list[tuple[int, int, str, float]]:
        """(session, track, event, at) of every play in time order: `plays()` without the records."""
        return self.conn.execute("SELECT session_id, track_id, event, at FROM plays ORDER BY at, id").fetchall()

    def play_totals(self) -> tuple[int, int]:
        """(how many plays, the highest play id): together they tell an addition from a deletion."""
        # Two statements: together in one, SQLite gives up both shortcuts and reads every play.
        count = self.conn.execute("SELECT count(*) FROM plays").fetchone()[0]
        return count, self.last_play_id()

    def last_events(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """The latest event of each (session, track) pair that has one (read through the session's index)."""
        out = {}
        for session_id, track_id in pairs:
            row = self.conn.execute(
                "SELECT event FROM plays WHERE session_id = ? AND track_id = ? ORDER BY at DESC, id DESC LIMIT 1",
                [session_id, track_id],
            ).fetchone()
            if row is not None:
                out[(session_id, track_id)] = row[0]
        return out

    def last_play_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM plays").fetchone()[0]

    def play_count(
        self,
        events: Sequence[str] = POSITIVE_EVENTS,
        *,
        track_id: int | None = None,
        after_id: int = 0,
        up_to_id: int | None = None,
    ) -> int:
        """Plays with one of `events` (default: the positive ones) and after_id < id <= up_to_id."""
        marks = ", ".join("?" for _ in events)
        sql = f"SELECT count(*) FROM plays WHERE event IN ({marks})"
        params: list = list(events)
        if track_id is not None:
            sql += " AND track_id = ?"
            params.append(track_id)
        if after_id:
            sql += " AND id > ?"
            params.append(after_id)
        if up_to_id is not None:
            sql += " AND id <= ?"
            params.append(up_to_id)
        return self.conn.execute(sql, params).fetchone()[0]

    def play_counts(self, events: Sequence[str] = POSITIVE_EVENTS) -> dict[int, int]:
        """How often each track was played (positive events by default); unplayed tracks are absent."""
        marks = ", ".join("?" for _ in events)
        cursor = self.conn.execute(
            f"SELECT track_id, count(*) FROM plays WHERE event IN ({marks}) GROUP BY track_id", list(events)
        )
        return {track_id: n for track_id, n in cursor.fetchall()}

    def recent_positive_track_ids(self, limit: int) -> list[int]:
        """Tracks of the `limit` most recent positive plays, newest first (repeats included)."""
        marks = ", ".join("?" for _ in POSITIVE_EVENTS)
        cursor = self.conn.execute(
            f"SELECT track_id FROM plays WHERE event IN ({marks}) ORDER BY at DESC, id DESC LIMIT ?",
            [*POSITIVE_EVENTS, limit],
        )
        return [track_id for (track_id,) in cursor.fetchall()]

    def played_track_ids(self) -> set[int]:
        marks = ", ".join("?" for _ in POSITIVE_EVENTS)
        cursor = self.conn.execute(
            f"SELECT DISTINCT track_id FROM plays WHERE event IN ({marks})", list(POSITIVE_EVENTS)
        )
        return {r[0] for r in cursor}

    def latest_sessions(self, limit: int) -> list[dict]:
        """The `limit` latest sessions as `sessions()` gives them (oldest first), read through an index."""
        rows = self.db.query(
            """SELECT s.id, s.started_at, s.last_at, s.source,
                      (SELECT count(*) FROM plays p WHERE p.session_id = s.id) AS events
               FROM sessions s ORDER BY s.started_at DESC, s.id DESC LIMIT ?""",
            [int(limit)],
        )
        return list(rows)[::-1]

    def played_among(self, track_ids: Sequence[int]) -> set[int]:
        """Those of `track_ids` with a positive play (looked up per track, not over the history)."""
        marks = ", ".join("?" for _ in POSITIVE_EVENTS)
        cursor = self.conn.execute(
            f"""SELECT DISTINCT track_id FROM plays
                WHERE track_id IN (SELECT value FROM json_each(?)) AND event IN ({marks})""",
            [json.dumps([int(t) for t in track_ids]), *POSITIVE_EVENTS],
        )
        return {r[0] for r in cursor}

    def sessions(self) -> list[dict]:
        return list(
            self.db.query(
                """SELECT s.id, s.started_at, s.last_at, s.source, count(p.id) AS events
                   FROM sessions s LEFT JOIN plays p ON p.session_id = s.id
                   GROUP BY s.id ORDER BY s.started_at"""
            )
        )

    def last_played_times(self) -> dict[int, float]:
        """When each track last had any event (played, skipped...): the radio's "not heard lately" rule."""
        cursor = self.conn.execute("SELECT track_id, max(at) FROM plays GROUP BY track_id")
        return {row[0]: row[1] for row in cursor}

    # -- forgetting: the history is personal data -------------------------------------------------

    def delete_play(self, play_id: int) -> bool:
        with self.write() as conn:
            cursor = conn.execute("DELETE FROM plays WHERE id = ?", [play_id])
        return cursor.rowcount > 0

    def delete_session(self, session_id: int) -> int:
        """Delete a session and its plays; returns how many plays went."""
        with self.write() as conn:
            cursor = conn.execute("DELETE FROM plays WHERE session_id = ?", [session_id])
            conn.execute("DELETE FROM sessions WHERE id = ?", [session_id])
        return cursor.rowcount

    def delete_history(self) -> int:
        """Every session and play; trained models are left to be retrained. Returns how many plays went."""
        with self.write() as conn:
            cursor = conn.execute("DELETE FROM plays")
            conn.execute("DELETE FROM sessions")
        return cursor.rowcount

    def session_summaries(self) -> list[dict]:
        """Sessions, newest first, with their counts per event."""
        return list(
            self.db.query(
                """SELECT s.id, s.started_at, s.last_at, s.source,
                          sum(p.event = 'complete') AS heard,
                          sum(p.event = 'skip') AS skips,
                          sum(p.event = 'like') AS likes,
                          sum(p.event = 'dislike') AS dislikes,
                          count(p.id) AS events
                   FROM sessions s LEFT JOIN plays p ON p.session_id = s.id
                   GROUP BY s.id ORDER BY s.started_at DESC, s.id DESC"""
            )
        )

    def session_counts_by_source(self) -> dict[str, dict[str, int]]:
        """Per session source ("app", "demo", ...): sessions, positive plays, likes and skips."""
        rows = self.conn.execute(
            """SELECT s.source, count(DISTINCT s.id),
                      sum(p.event = 'play'),
                      sum(p.event = 'like'), sum(p.event = 'skip')
               FROM sessions s LEFT JOIN plays p ON p.session_id = s.id GROUP BY s.source"""
        ).fetchall()
        return {
            source: {"sessions": n, "plays": plays or 0, "likes": likes or 0, "skips": skips or 0}
            for source, n, plays, likes, skips in rows
        }

    def delete_sessions(self, *, source: str) -> int:
        """Delete the sessions of one source with their plays; returns how many sessions went."""
        with self.write() as conn:
            conn.execute("DELETE FROM plays WHERE session_id IN (SELECT id FROM sessions WHERE source = ?)", [source])
            cursor = conn.execute("DELETE FROM sessions WHERE source = ?", [source])
        return cursor.rowcount
