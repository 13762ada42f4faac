"""Stored evaluation runs."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

import sqlite_utils

from mrs_tui.store.connection import LockedConnection


class EvaluationsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def add_eval_run(self, created_at: float, dataset: str, settings: dict, results: dict) -> int:
        """Store one run (the settings that decided its numbers, and the numbers); returns its id."""
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO eval_runs (created_at, dataset, settings, results) VALUES (?, ?, ?, ?)",
                [created_at, dataset, json.dumps(settings), json.dumps(results)],
            )
        return int(cursor.lastrowid)

    def eval_run(self, run_id: int) -> dict | None:
        """One stored run: id, created_at, dataset, settings and results (dicts), or None."""
        row = self.conn.execute(
            "SELECT id, created_at, dataset, settings, results FROM eval_runs WHERE id = ?", [run_id]
        ).fetchone()
        return _run(row) if row else None

    def eval_runs(self, limit: int = 50) -> list[dict]:
        """Stored runs, newest first, in the form of `eval_run`."""
        cursor = self.conn.execute(
            "SELECT id, created_at, dataset, settings, results FROM eval_runs ORDER BY created_at DESC, id DESC LIMIT ?",
            [limit],
        )
        return [_run(row) for row in cursor.fetchall()]


def _run(row: tuple) -> dict:
    run_id, created_at, dataset, settings, results = row
    return {
        "id": run_id,
        "created_at": created_at,
        "dataset": dataset,
        "settings": json.loads(settings),
        "results": json.loads(results),
    }
