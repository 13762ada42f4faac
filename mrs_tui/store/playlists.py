"""Named playlists: an ordered list of tracks each."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils

from mrs_tui.store.connection import LockedConnection


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    id: int
    name: str
    created_at: float
    updated_at: float
    tracks: int


class PlaylistsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def playlists(self) -> list[PlaylistInfo]:
        rows = self.db.query(
            """SELECT p.id, p.name, p.created_at, p.updated_at, count(i.track_id) AS tracks
               FROM playlists p LEFT JOIN playlist_items i ON i.playlist_id = p.id
               GROUP BY p.id ORDER BY p.name COLLATE NOCASE"""
        )
        return [PlaylistInfo(**row) for row in rows]

    def playlist(self, name: str) -> PlaylistInfo | None:
        return next((p for p in self.playlists() if p.name == name), None)

    def playlist_track_ids(self, playlist_id: int) -> list[int]:
        cursor = self.conn.execute(
            "SELECT track_id FROM playlist_items WHERE playlist_id = ? ORDER BY position", [playlist_id]
        )
        return [row[0] for row in cursor]

    def save_playlist(self, name: str, track_ids: Sequence[int]) -> int:
        """Create or replace the playlist `name` with `track_ids`, in order."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT id FROM playlists WHERE name = ?", [name]).fetchone()
            if row is None:
                playlist_id = conn.execute(
                    "INSERT INTO playlists (name, created_at, updated_at) VALUES (?, ?, ?)", [name, now, now]
                ).lastrowid
            else:
                playlist_id = row[0]
                conn.execute("UPDATE playlists SET updated_at = ? WHERE id = ?", [now, playlist_id])
                conn.execute("DELETE FROM playlist_items WHERE playlist_id = ?", [playlist_id])
            conn.executemany(
                "INSERT INTO playlist_items (playlist_id, position, track_id) VALUES (?, ?, ?)",
                [(playlist_id, position, track_id) for position, track_id in enumerate(track_ids)],
            )
        return int(playlist_id)

    def rename_playlist(self, old: str, new: str) -> bool:
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE playlists SET name = ?, updated_at = ? WHERE name = ?", [new, time.time(), old]
            )
        return cursor.rowcount > 0

    def delete_playlist(self, name: str) -> bool:
        with self.write() as conn:
            cursor = conn.execute("DELETE FROM playlists WHERE name = ?", [name])
        return cursor.rowcount > 0
