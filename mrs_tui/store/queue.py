"""The play queue as it stood when last changed, so it is there again after a restart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection


@dataclass(frozen=True, slots=True)
class SavedQueueEntry:
    track_id: int
    why: str
    rule: str
    source: str
    score: float | None


class QueueMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def tracks(self, *, ids=None, **filters) -> list: ...  # provided by Store (TracksMixin)

    def save_queue(self, entries: Sequence[SavedQueueEntry], position: int) -> None:
        """Replace the saved queue with `entries`, the one at `position` playing (-1: none yet)."""
        with self.write() as conn:
            conn.execute("DELETE FROM queue_entries")
            conn.executemany(
                "INSERT INTO queue_entries (position, track_id, why, rule, source, score) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, e.track_id, e.why, e.rule, e.source, e.score) for i, e in enumerate(entries)],
            )
            conn.execute(
                "INSERT INTO queue_state (id, position) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET position = ?",
                [position, position],
            )

    def save_radio(self, seeds: Sequence[int] | None, label: str = "") -> None:
        """Remember the radio filling the queue (its seed tracks and label); None: no radio."""
        value = json.dumps([int(s) for s in seeds]) if seeds else None
        with self.write() as conn:
            conn.execute(
                """INSERT INTO queue_state (id, position, radio_seeds, radio_label) VALUES (1, -1, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET radio_seeds = excluded.radio_seeds, radio_label = excluded.radio_label""",
                [value, label if seeds else None],
            )

    def saved_radio(self) -> tuple[list[int], str] | None:
        """The remembered radio's seeds that are still in the library, and its label; None: none."""
        row = self.conn.execute("SELECT radio_seeds, radio_label FROM queue_state WHERE id = 1").fetchone()
        if row is None or not row[0]:
            return None
        try:
            wanted = [int(s) for s in json.loads(row[0])]
        except (ValueError, TypeError):
            return None  # not ours to trust: the radio simply stays off
        present = {t.id for t in self.tracks(ids=wanted)}
        seeds = [s for s in wanted if s in present]
        return (seeds, row[1] or "") if seeds else None

    def saved_queue(self) -> tuple[list[SavedQueueEntry], int]:
        """The saved entries in order, and the position of the one that was playing (-1: none)."""
        row = self.conn.execute("SELECT position FROM queue_state WHERE id = 1").fetchone()
        rows = self.conn.execute(
            "SELECT track_id, why, rule, source, score FROM queue_entries ORDER BY position"
        ).fetchall()
        entries = [SavedQueueEntry(*r) for r in rows]
        return entries, min(row[0], len(entries) - 1) if row else -1
