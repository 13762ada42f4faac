"""A sqlite3 connection that several threads of one process can share."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


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


DAMAGED_FIX = "run `mrs-tui doctor` (or restore a backup); nothing was written"


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A malformed page or a file that is not a database, as opposed to a lock or a permission."""
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "database corrupt" in text


def explain_sqlite_error(exc: sqlite3.DatabaseError, path: object) -> tuple[str, str]:
    """(problem, what to do) for an error SQLite raised on the database at `path`."""
    text = str(exc)
    if is_damage(exc):
        return f"the database {path} is damaged ({text})", DAMAGED_FIX
    if "readonly" in text.lower() or "read-only" in text.lower():
        return (
            f"the database {path} cannot be written: its file or folder is read-only",
            "make the folder and the file writable, or pass --db PATH to a writable location",
        )
    if "disk i/o" in text.lower() or "full" in text.lower():
        return f"the database {path} could not be written ({text})", "check the disk has space and is mounted"
    return f"database error on {path}: {text}", "run `mrs-tui doctor`"


def integrity_problems(db: Path) -> list[str]:
    """SQLite's own check of every page and index; an empty list means the file is sound."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()
    messages = [r[0] for r in rows]
    return [] if messages == ["ok"] else messages
