"""A sqlite3 connection that several threads of one process can share."""

from __future__ import annotations

import sqlite3
import threading


class Rows:
    """A statement's result, read completely while the store's lock was held."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.description = cursor.description
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount
        self._rows = cursor.fetchall()
        self._next = 0

    def fetchone(self):
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self):
        return iter(self.fetchall())


class LockedConnection:
    """Serialises statements from several threads on one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock

    def execute(self, sql: str, parameters=()) -> Rows:
        with self._lock:
            return Rows(self._conn.execute(sql, parameters))

    def executemany(self, sql: str, seq) -> Rows:
        with self._lock:
            return Rows(self._conn.executemany(sql, seq))

    def __getattr__(self, name: str):
        return getattr(self._conn, name)
