"""Blind A/B choices between two suggestion lists, and their tallies per pair."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection

AB_CHOICES = ("a", "b", "same")


@dataclass(frozen=True)
class ABTally:
    """Choices between `a` and `b` (each "backend/recommender"), `a` < `b` so a pair has one row."""

    axis: str  # "backends" or "recommenders": what differed between the two lists
    a: str
    b: str
    a_wins: int
    b_wins: int
    same: int

    @property
    def trials(self) -> int:
        return self.a_wins + self.b_wins + self.same


class ABMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def add_ab_choice(self, axis: str, a: str, b: str, choice: str, *, seed_track_id: int | None = None) -> int:
        """Record that `choice` ("a", "b" or "same") was preferred; the pair is stored in sorted order."""
        if choice not in AB_CHOICES:
            raise ValueError(f"unknown A/B choice {choice!r}")
        if a == b:
            raise ValueError("an A/B choice needs two different lists")
        if a > b:
            a, b = b, a
            choice = {"a": "b", "b": "a"}.get(choice, choice)
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO ab_choices (at, axis, a, b, choice, seed_track_id) VALUES (?, ?, ?, ?, ?, ?)",
                [time.time(), axis, a, b, choice, seed_track_id],
            )
        return int(cursor.lastrowid)

    def ab_tallies(self) -> list[ABTally]:
        rows = self.conn.execute(
            """SELECT axis, a, b, sum(choice = 'a'), sum(choice = 'b'), sum(choice = 'same')
               FROM ab_choices GROUP BY axis, a, b ORDER BY count(*) DESC, a, b"""
        ).fetchall()
        return [ABTally(axis, a, b, int(wa), int(wb), int(same)) for axis, a, b, wa, wb, same in rows]
