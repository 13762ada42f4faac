"""The local database: one SQLite file in WAL mode.

Tracks, embeddings keyed by (track, backend, backend version), listening sessions and plays,
trained models and evaluation runs all live here. The schema is versioned with
``PRAGMA user_version``; `MIGRATIONS` brings any older file up to date inside one transaction,
so a failed migration leaves the file as it was.

Several processes may use the file at once (the TUI and a CLI ``index`` run, say): WAL lets
readers proceed during a write, every write takes the lock up front (``BEGIN IMMEDIATE``) and
waits for it up to `BUSY_TIMEOUT_MS` instead of failing with "database is locked".
One `Store` may be shared by the threads of one process (the TUI's workers): every statement
runs under the store's lock and its rows are read before the lock is released, and a write
transaction holds the lock from BEGIN to COMMIT. `Store.clone()` gives a thread its own
connection where that is preferable (long read loops).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from mrs_tui.errors import DatabaseError
from mrs_tui.store.ab import ABMixin
from mrs_tui.store.connection import DAMAGED_FIX, LockedConnection, explain_sqlite_error, is_damage
from mrs_tui.store.embeddings import EmbeddingsMixin
from mrs_tui.store.evaluations import EvaluationsMixin
from mrs_tui.store.imports import ImportedPlay, ImportsMixin
from mrs_tui.store.models import ModelsMixin
from mrs_tui.store.playlists import PlaylistsMixin
from mrs_tui.store.plays import PlaysMixin
from mrs_tui.store.queue import QueueMixin, SavedQueueEntry
from mrs_tui.store.records import (
    PLAY_EVENTS,
    POSITIVE_EVENTS,
    TRACK_STATUSES,
    EmbeddingRow,
    Play,
    Track,
    blob_to_vector,
    search_index_text,
    search_matches,
    vector_to_blob,
)
from mrs_tui.store.schema import MIGRATIONS, SCHEMA_VERSION
from mrs_tui.store.serving import ServingMixin
from mrs_tui.store.tracks import TracksMixin

__all__ = [
    "MIGRATIONS",
    "PLAY_EVENTS",
    "POSITIVE_EVENTS",
    "SCHEMA_VERSION",
    "TRACK_STATUSES",
    "EmbeddingRow",
    "ImportedPlay",
    "Play",
    "SavedQueueEntry",
    "Store",
    "Track",
    "blob_to_vector",
    "vector_to_blob",
]

BUSY_TIMEOUT_MS = 60_000


# Tables every mrs-tui database has had since its first schema.
OWN_TABLES = frozenset({"tracks", "embeddings", "sessions", "plays"})


def _refuse_foreign(path: Path) -> None:
    """Raise unless the file at `path` is an mrs-tui database; looks without changing a byte."""
    fix = "pass --db PATH to a file of its own (or a new one); nothing was changed"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc) and path.read_bytes()[:16] == b"SQLite format 3\0":
            raise DatabaseError(f"the database {path} is damaged ({exc})", DAMAGED_FIX) from exc
        raise DatabaseError(f"{path} is not a usable mrs-tui database ({exc})", fix) from exc
    tables = {t for t in tables if not t.startswith("sqlite_")}
    if tables and (version == 0 or not tables >= OWN_TABLES):
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatabaseError(f"{path} is another application's database (tables: {shown})", fix)


class Store(
    TracksMixin,
    EmbeddingsMixin,
    PlaysMixin,
    ModelsMixin,
    EvaluationsMixin,
    ImportsMixin,
    PlaylistsMixin,
    ABMixin,
    ServingMixin,
    QueueMixin,
):
    """A connection to the library database. Cheap to open; safe to share between threads."""

    def __init__(self, path: Path | str, *, _conn: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        raw = _conn if _conn is not None else self._connect(self.path)
        raw.create_function("track_matches", 6, search_matches, deterministic=True)
        raw.create_function("track_search_text", 5, search_index_text, deterministic=True)
        self.conn = LockedConnection(raw, self._lock)
        self.db = sqlite_utils.Database(self.conn)
        self._embedding_counts: tuple[tuple[int, int], dict] | None = None  # (write token, counts)
        self._migrate()

    @classmethod
    def open(cls, path: Path | str) -> Store:
        return cls(path)

    def write_token(self) -> tuple[int, int]:
        """Moves on whenever anything is written to the database, by this connection or another:
        a key for answers worth keeping until then."""
        with self._lock:
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            return version, self.conn.total_changes

    @classmethod
    def memory(cls) -> Store:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        return cls(":memory:", _conn=conn)

    def clone(self) -> Store:
        """A new connection to the same file, for use in another thread."""
        if str(self.path) == ":memory:":
            raise ValueError("an in-memory store cannot be shared between threads")
        return Store(self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        fix = "pass --db PATH (or set MRS_TUI_DB) to a writable location"
        if path.is_dir():
            raise DatabaseError(f"database path {path} is a folder", "give a file path instead")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create folder {path.parent}: {exc.strerror}", fix) from exc
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise DatabaseError(f"database {path} is not readable and writable", fix)
        if not path.exists() and not os.access(path.parent, os.W_OK):
            raise DatabaseError(f"cannot create database in {path.parent}: permission denied", fix)
        if not os.access(path.parent, os.W_OK):
            raise DatabaseError(
                f"the folder {path.parent} is read-only: the database writes its journal (-wal) beside it",
                "make the folder writable, or copy the database to a writable place and pass --db PATH",
            )
        if path.exists() and path.stat().st_size > 0:
            _refuse_foreign(path)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so writes can take the lock up front.
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(*explain_sqlite_error(exc, path)) from exc
        if mode.lower() != "wal":
            raise DatabaseError(f"{path}: could not switch the database to WAL mode ({mode})", fix)
        return conn

    # -- transactions and schema ---------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock at its start (no upgrade deadlocks)."""
        with self._lock:
            if self.conn.in_transaction:  # nested: join the outer transaction
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def check_pages(self) -> None:
        """Refuse to go on with a damaged file (raises DatabaseError); reads every page once."""
        try:
            messages = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            messages = [str(exc)]
        if messages != ["ok"]:
            raise DatabaseError(f"the database {self.path} is damaged ({messages[0]})", DAMAGED_FIX)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"{self.path} was written by a newer mrs-tui (schema {current} > {SCHEMA_VERSION})",
                "upgrade mrs-tui or pass --db PATH to another file",
            )
        if current == SCHEMA_VERSION:
            return
        try:
            with self.write():
                current = self.schema_version  # another process may have migrated meanwhile
                for number in range(current + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[number - 1](self.db)
                    self.conn.execute(f"PRAGMA user_version={number}")
        except sqlite3.OperationalError as exc:
            raise DatabaseError(
                f"cannot update the schema of {self.path}: {exc}",
                "check the file is writable; the schema was left as it was",
            ) from exc
