"""Trained models: which file serves which (recommender, backend, version).

A row is written only after the model's folder is complete, so a reader never sees half a
model; the newest row of a (recommender, backend, version) is the one that serves.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection


@dataclass(frozen=True)
class ModelRecord:
    """One row of the `models` table."""

    id: int
    recommender: str
    backend: str
    version: str
    path: str  # relative to the data folder
    trained_at: float
    n_plays: int
    last_play_id: int
    n_hot: int
    n_cold: int
    params: dict

    @classmethod
    def from_row(cls, row: tuple) -> ModelRecord:
        (rid, rec, backend, version, path, trained_at, n_plays, last_play_id, n_hot, n_cold, params) = row
        return cls(
            rid,
            rec,
            backend,
            version,
            path,
            trained_at,
            n_plays,
            last_play_id or 0,
            n_hot or 0,
            n_cold or 0,
            json.loads(params) if params else {},
        )


_COLUMNS = "id, recommender, backend, version, path, trained_at, n_plays, last_play_id, n_hot, n_cold, params"
_NEWEST_FIRST = "ORDER BY trained_at DESC, id DESC"


class ModelsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def latest_model(self, recommender: str, backend: str, version: str) -> ModelRecord | None:
        """The model that serves (recommender, backend, version): the newest one."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM models WHERE recommender = ? AND backend = ? AND version = ? {_NEWEST_FIRST} LIMIT 1",
            [recommender, backend, version],
        ).fetchone()
        return ModelRecord.from_row(row) if row else None

    def model_records(
        self, recommender: str | None = None, backend: str | None = None, version: str | None = None
    ) -> list[ModelRecord]:
        """Trained models, newest first, optionally of one recommender, backend or version."""
        clauses, params = [], []
        for column, value in (("recommender", recommender), ("backend", backend), ("version", version)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cursor = self.conn.execute(f"SELECT {_COLUMNS} FROM models {where} {_NEWEST_FIRST}", params)
        return [ModelRecord.from_row(r) for r in cursor.fetchall()]

    def add_model(
        self,
        *,
        recommender: str,
        backend: str,
        version: str,
        path: str,
        trained_at: float,
        n_plays: int,
        last_play_id: int,
        n_hot: int,
        n_cold: int,
        params: dict,
    ) -> ModelRecord:
        """Record a model whose folder is complete; it serves from the next read on."""
        values = [recommender, backend, version, path, trained_at, n_plays, last_play_id, n_hot, n_cold]
        with self.write() as conn:
            cursor = conn.execute(
                """INSERT INTO models (recommender, backend, version, path, trained_at, n_plays, last_play_id,
                                       n_hot, n_cold, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [*values, json.dumps(params, default=str)],
            )
            row = conn.execute(f"SELECT {_COLUMNS} FROM models WHERE id = ?", [cursor.lastrowid]).fetchone()
        return ModelRecord.from_row(row)

    def delete_model(self, model_id: int) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", [model_id])
