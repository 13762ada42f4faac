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

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from mrs_tui.errors import DatabaseError

BUSY_TIMEOUT_MS = 60_000

TRACK_STATUSES = ("ok", "failed", "missing")
PLAY_EVENTS = ("play", "complete", "skip", "like", "dislike")
# Events that say the listener wanted the track; skips and dislikes are kept but not positives.
POSITIVE_EVENTS = ("play", "complete", "like")


def _migration_1(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE tracks (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER,
            mtime REAL,
            content_hash TEXT,
            title TEXT,
            artist TEXT,
            album TEXT,
            genre TEXT,
            year TEXT,
            duration REAL,
            status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed', 'missing')),
            error TEXT,
            added_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX tracks_hash ON tracks(content_hash)")
    db.execute(
        """
        CREATE TABLE embeddings (
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            backend TEXT NOT NULL,
            version TEXT NOT NULL,
            dim INTEGER,
            vector BLOB,
            error TEXT,
            extras TEXT,
            seconds REAL,
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE UNIQUE INDEX embeddings_key ON embeddings(track_id, backend, version)")
    db.execute("CREATE INDEX embeddings_model ON embeddings(backend, version)")
    db.execute(
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            last_at REAL NOT NULL,
            source TEXT NOT NULL DEFAULT 'app'
        )"""
    )
    db.execute(
        """
        CREATE TABLE plays (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            track_id INTEGER NOT NULL REFERENCES tracks(id),
            event TEXT NOT NULL CHECK (event IN ('play', 'complete', 'skip', 'like', 'dislike')),
            at REAL NOT NULL,
            position_s REAL
        )"""
    )
    db.execute("CREATE INDEX plays_session ON plays(session_id, at)")
    db.execute("CREATE INDEX plays_track ON plays(track_id)")


def _migration_2(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            recommender TEXT NOT NULL,
            backend TEXT NOT NULL,
            version TEXT NOT NULL,
            path TEXT NOT NULL,
            trained_at REAL NOT NULL,
            n_plays INTEGER NOT NULL,
            last_play_id INTEGER,
            n_hot INTEGER,
            n_cold INTEGER,
            params TEXT
        )"""
    )
    db.execute("CREATE INDEX models_key ON models(recommender, backend, version, trained_at)")
    db.execute(
        """
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            dataset TEXT NOT NULL,
            settings TEXT NOT NULL,
            results TEXT NOT NULL
        )"""
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1, _migration_2]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Track:
    id: int
    path: str
    size: int | None = None
    mtime: float | None = None
    content_hash: str | None = None
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: str | None = None
    duration: float | None = None
    status: str = "ok"
    error: str | None = None
    added_at: float = 0.0
    updated_at: float = 0.0

    @property
    def display_title(self) -> str:
        return self.title or Path(self.path).stem

    @classmethod
    def from_row(cls, row: dict) -> Track:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


@dataclass(frozen=True)
class Play:
    id: int
    session_id: int
    track_id: int
    event: str
    at: float
    position_s: float | None = None


@dataclass(frozen=True)
class EmbeddingRow:
    track_id: int
    backend: str
    version: str
    vector: np.ndarray | None
    error: str | None = None
    extras: dict | None = None
    seconds: float | None = None


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


class _Rows:
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


class _LockedConnection:
    """Serialises statements from several threads on one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock

    def execute(self, sql: str, parameters=()) -> _Rows:
        with self._lock:
            return _Rows(self._conn.execute(sql, parameters))

    def executemany(self, sql: str, seq) -> _Rows:
        with self._lock:
            return _Rows(self._conn.executemany(sql, seq))

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


class Store:
    """A connection to the library database. Cheap to open; safe to share between threads."""

    def __init__(self, path: Path | str, *, _conn: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        raw = _conn if _conn is not None else self._connect(self.path)
        self.conn = _LockedConnection(raw, self._lock)
        self.db = sqlite_utils.Database(self.conn)
        self._migrate()

    @classmethod
    def open(cls, path: Path | str) -> Store:
        return cls(path)

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
        try:
            # isolation_level=None: we issue BEGIN ourselves, so writes can take the lock up front.
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(
                f"{path} is not a usable mrs-tui database ({exc})",
                "move it aside or pass --db PATH to another file",
            ) from exc
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
                "check the file is writable; nothing was changed",
            ) from exc

    # -- tracks ----------------------------------------------------------------------------

    def add_track(self, path: str, **fields: object) -> int:
        now = time.time()
        columns = {"path": path, "added_at": now, "updated_at": now, **fields}
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        with self.write() as conn:
            cursor = conn.execute(f"INSERT INTO tracks ({names}) VALUES ({marks})", list(columns.values()))
        return int(cursor.lastrowid)

    def update_track(self, track_id: int, **fields: object) -> None:
        if not fields:
            return
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.write() as conn:
            conn.execute(f"UPDATE tracks SET {assignments} WHERE id = ?", [*fields.values(), track_id])

    def track(self, track_id: int) -> Track | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE id = ?", [track_id]))
        return Track.from_row(rows[0]) if rows else None

    def track_by_path(self, path: str) -> Track | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE path = ?", [path]))
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
            prefix = under.rstrip("/") + "/"
            clauses.append("substr(path, 1, ?) = ?")
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

    # -- embeddings --------------------------------------------------------------------------

    def put_embeddings(self, rows: Iterable[EmbeddingRow]) -> int:
        now = time.time()
        values = [
            (
                row.track_id,
                row.backend,
                row.version,
                None if row.vector is None else int(row.vector.shape[-1]),
                None if row.vector is None else vector_to_blob(row.vector),
                row.error,
                None if row.extras is None else json.dumps(row.extras),
                row.seconds,
                now,
            )
            for row in rows
        ]
        with self.write() as conn:
            conn.executemany(
                """INSERT INTO embeddings
                   (track_id, backend, version, dim, vector, error, extras, seconds, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (track_id, backend, version) DO UPDATE SET
                   dim = excluded.dim, vector = excluded.vector, error = excluded.error,
                   extras = excluded.extras, seconds = excluded.seconds,
                   created_at = excluded.created_at""",
                values,
            )
        return len(values)

    def embedding_matrix(
        self, backend: str, version: str, *, since_rowid: int = 0, only_ok_tracks: bool = True
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(track ids, float32 matrix, highest rowid read) of the stored vectors of one model."""
        status = "AND t.status = 'ok'" if only_ok_tracks else ""
        cursor = self.conn.execute(
            f"""SELECT e.rowid, e.track_id, e.vector FROM embeddings e JOIN tracks t ON t.id = e.track_id
               WHERE e.backend = ? AND e.version = ? AND e.vector IS NOT NULL AND e.rowid > ? {status}
               ORDER BY e.track_id""",
            [backend, version, since_rowid],
        )
        rows = cursor.fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), since_rowid
        ids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        matrix = np.stack([blob_to_vector(r[2]) for r in rows]).astype(np.float32, copy=False)
        return ids, matrix, max(r[0] for r in rows)

    def embedding(self, track_id: int, backend: str, version: str) -> EmbeddingRow | None:
        row = self.conn.execute(
            """SELECT vector, error, extras, seconds FROM embeddings
               WHERE track_id = ? AND backend = ? AND version = ?""",
            [track_id, backend, version],
        ).fetchone()
        if row is None:
            return None
        vector = None if row[0] is None else blob_to_vector(row[0]).copy()
        extras = None if row[2] is None else json.loads(row[2])
        return EmbeddingRow(track_id, backend, version, vector, row[1], extras, row[3])

    def embedded_track_ids(self, backend: str, version: str, *, include_failed: bool = True) -> set[int]:
        failed = "" if include_failed else "AND vector IS NOT NULL"
        cursor = self.conn.execute(
            f"SELECT track_id FROM embeddings WHERE backend = ? AND version = ? {failed}",
            [backend, version],
        )
        return {r[0] for r in cursor}

    def tracks_needing(self, backend: str, version: str, ids: Iterable[int] | None = None) -> list[Track]:
        """Tracks with status ok and no stored result (vector or failure) for this model."""
        done = self.embedded_track_ids(backend, version)
        candidates = self.tracks(status="ok", ids=ids)
        return [t for t in candidates if t.id not in done]

    def embedding_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(backend, version) -> (vectors stored, failures)."""
        cursor = self.conn.execute(
            """SELECT backend, version, count(vector), count(*) - count(vector)
               FROM embeddings GROUP BY backend, version"""
        )
        return {(b, v): (ok, bad) for b, v, ok, bad in cursor}

    def vector_count(self, backend: str, version: str) -> int:
        """Stored vectors of one model for tracks whose status is ok."""
        return self.conn.execute(
            """SELECT count(*) FROM embeddings e JOIN tracks t ON t.id = e.track_id
               WHERE e.backend = ? AND e.version = ? AND e.vector IS NOT NULL AND t.status = 'ok'""",
            [backend, version],
        ).fetchone()[0]

    def max_embedding_rowid(self, backend: str, version: str) -> int:
        row = self.conn.execute(
            "SELECT max(rowid) FROM embeddings WHERE backend = ? AND version = ?", [backend, version]
        ).fetchone()
        return row[0] or 0

    def delete_embeddings(self, track_id: int) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM embeddings WHERE track_id = ?", [track_id])

    # -- sessions and plays --------------------------------------------------------------------

    def latest_session(self) -> tuple[int, float, float] | None:
        row = self.conn.execute(
            "SELECT id, started_at, last_at FROM sessions ORDER BY last_at DESC, id DESC LIMIT 1"
        ).fetchone()
        return tuple(row) if row else None

    def new_session(self, at: float, source: str = "app") -> int:
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO sessions (started_at, last_at, source) VALUES (?, ?, ?)", [at, at, source]
            )
        return int(cursor.lastrowid)

    def add_play(self, session_id: int, track_id: int, event: str, at: float, position_s: float | None = None) -> int:
        if event not in PLAY_EVENTS:
            raise ValueError(f"unknown play event {event!r}")
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO plays (session_id, track_id, event, at, position_s) VALUES (?, ?, ?, ?, ?)",
                [session_id, track_id, event, at, position_s],
            )
            conn.execute("UPDATE sessions SET last_at = max(last_at, ?) WHERE id = ?", [at, session_id])
        return int(cursor.lastrowid)

    def plays(
        self,
        *,
        session_id: int | None = None,
        events: Sequence[str] | None = None,
        since_id: int = 0,
    ) -> list[Play]:
        clauses, params = ["id > ?"], [since_id]
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        if events is not None:
            clauses.append(f"event IN ({', '.join('?' for _ in events)})")
            params += list(events)
        sql = f"SELECT * FROM plays WHERE {' AND '.join(clauses)} ORDER BY at, id"
        return [Play(**row) for row in self.db.query(sql, params)]

    def last_play_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM plays").fetchone()[0]

    def play_count(self, events: Sequence[str] = POSITIVE_EVENTS, *, track_id: int | None = None) -> int:
        marks = ", ".join("?" for _ in events)
        sql = f"SELECT count(*) FROM plays WHERE event IN ({marks})"
        params: list = list(events)
        if track_id is not None:
            sql += " AND track_id = ?"
            params.append(track_id)
        return self.conn.execute(sql, params).fetchone()[0]

    def played_track_ids(self) -> set[int]:
        marks = ", ".join("?" for _ in POSITIVE_EVENTS)
        cursor = self.conn.execute(
            f"SELECT DISTINCT track_id FROM plays WHERE event IN ({marks})", list(POSITIVE_EVENTS)
        )
        return {r[0] for r in cursor}

    def sessions(self) -> list[dict]:
        return list(
            self.db.query(
                """SELECT s.id, s.started_at, s.last_at, s.source, count(p.id) AS events
                   FROM sessions s LEFT JOIN plays p ON p.session_id = s.id
                   GROUP BY s.id ORDER BY s.started_at"""
            )
        )
