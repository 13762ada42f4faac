"""Tracks: files of the library, their tags and status."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

import sqlite_utils

from mrs_tui.store.connection import LockedConnection
from mrs_tui.store.records import Track, path_to_db
from mrs_tui.store.schema import next_change


class TracksMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def add_track(self, path: str, **fields: object) -> int:
        """The id of the track at `path`, added now unless another process just added it."""
        now = time.time()
        columns = {"path": path_to_db(path), "added_at": now, "updated_at": now, **fields}
        with self.write() as conn:
            columns["change"] = next_change(conn)
            names = ", ".join(columns)
            marks = ", ".join("?" for _ in columns)
            conn.execute(
                f"INSERT INTO tracks ({names}) VALUES ({marks}) ON CONFLICT (path) DO NOTHING", list(columns.values())
            )
            row = conn.execute("SELECT id FROM tracks WHERE path = ?", [columns["path"]]).fetchone()
        return int(row[0])

    def update_track(self, track_id: int, **fields: object) -> None:
        if not fields:
            return
        fields["updated_at"] = time.time()
        if "path" in fields:
            fields["path"] = path_to_db(str(fields["path"]))
        with self.write() as conn:
            if "status" in fields:  # what is searchable changes: derived catalogues must notice
                fields["change"] = next_change(conn)
            assignments = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE tracks SET {assignments} WHERE id = ?", [*fields.values(), track_id])

    def track(self, track_id: int) -> Track | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE id = ?", [track_id]))
        return Track.from_row(rows[0]) if rows else None

    def track_by_path(self, path: str) -> Track | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE path = ?", [path_to_db(path)]))
        return Track.from_row(rows[0]) if rows else None

    def tracks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        under: str | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[Track]:
        clauses, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params += statuses
        if under is not None:
            # Compared as bytes: paths that are not UTF-8 are stored as BLOBs (see path_to_db).
            prefix = os.fsencode(under.rstrip("/") + "/")
            clauses.append("substr(CAST(path AS BLOB), 1, ?) = ?")
            params += [len(prefix), prefix]
        if ids is not None:
            id_list = [int(i) for i in ids]
            clauses.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(id_list))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM tracks {where} ORDER BY artist IS NULL, artist, album, title, path"
        return [Track.from_row(row) for row in self.db.query(sql, params)]

    def tracks_by_hash(self, content_hash: str) -> list[Track]:
        rows = self.db.query("SELECT * FROM tracks WHERE content_hash = ?", [content_hash])
        return [Track.from_row(row) for row in rows]

    def track_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
