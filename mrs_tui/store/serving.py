"""Which (recommender, backend) pair serves each mode, when the user applied a measured winner."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection

SERVING_MODES = ("hot", "cold")


@dataclass(frozen=True)
class ServedPair:
    mode: str  # "hot" (tracks known from history) or "cold" (new files, audio only)
    recommender: str
    backend: str
    run_id: int | None  # the evaluation run it won
    set_at: float


class ServingMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def set_served_pair(self, mode: str, recommender: str, backend: str, run_id: int | None) -> None:
        if mode not in SERVING_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self.write() as conn:
            conn.execute(
                """INSERT INTO served_pairs (mode, recommender, backend, run_id, set_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(mode) DO UPDATE SET recommender = excluded.recommender, backend = excluded.backend,
                   run_id = excluded.run_id, set_at = excluded.set_at""",
                [mode, recommender, backend, run_id, time.time()],
            )

    def clear_served_pairs(self) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM served_pairs")

    def served_pairs(self) -> dict[str, ServedPair]:
        rows = self.conn.execute("SELECT mode, recommender, backend, run_id, set_at FROM served_pairs").fetchall()
        return {r[0]: ServedPair(*r) for r in rows}
