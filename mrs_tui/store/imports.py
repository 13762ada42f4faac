"""Plays imported from listening exports, and the keys that make a second import add nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection
from mrs_tui.store.records import PLAY_EVENTS


@dataclass(frozen=True, slots=True)
class ImportedPlay:
    key: str  # see `mrs_tui.imports.matching.listen_key`
    track_id: int
    event: str
    at: float
    position_s: float | None
    file: str


class ImportsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def imported_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of `keys` already imported."""
        key_list = list(keys)
        found: set[str] = set()
        for start in range(0, len(key_list), 50_000):
            chunk = json.dumps(key_list[start : start + 50_000])
            cursor = self.conn.execute(
                "SELECT key FROM imported_listens WHERE key IN (SELECT value FROM json_each(?))", [chunk]
            )
            found.update(row[0] for row in cursor)
        return found

    def add_imported_sessions(self, source: str, sessions: Sequence[Sequence[ImportedPlay]]) -> tuple[int, int]:
        """Write sessions of imported plays in one transaction; plays whose key is known are left out.

        Returns (sessions written, plays written).
        """
        now = time.time()
        session_rows, play_rows, key_rows = [], [], []
        with self.write() as conn:
            known = self.imported_keys(p.key for session in sessions for p in session)
            # Explicit ids: the write lock is held from here to COMMIT, so nobody else takes them,
            # and rows can go in with executemany (a 100k-row import in seconds, not a minute).
            next_session = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM sessions").fetchone()[0]
            next_play = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM plays").fetchone()[0]
            for session in sessions:
                fresh = [p for p in session if p.key not in known]
                if not fresh:
                    continue
                session_id = next_session
                next_session += 1
                session_rows.append((session_id, min(p.at for p in fresh), max(p.at for p in fresh), source))
                for play in fresh:
                    if play.event not in PLAY_EVENTS:
                        raise ValueError(f"unknown play event {play.event!r}")
                    play_rows.append((next_play, session_id, play.track_id, play.event, play.at, play.position_s))
                    key_rows.append((play.key, next_play, source, play.file, now))
                    known.add(play.key)
                    next_play += 1
            conn.executemany("INSERT INTO sessions (id, started_at, last_at, source) VALUES (?, ?, ?, ?)", session_rows)
            conn.executemany(
                "INSERT INTO plays (id, session_id, track_id, event, at, position_s) VALUES (?, ?, ?, ?, ?, ?)",
                play_rows,
            )
            conn.executemany(
                "INSERT INTO imported_listens (key, play_id, source, file, imported_at) VALUES (?, ?, ?, ?, ?)",
                key_rows,
            )
        return len(session_rows), len(play_rows)
