"""Embeddings: one vector (or failure) per (track, backend, backend version)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager

import numpy as np
import sqlite_utils

from mrs_tui.store.connection import LockedConnection
from mrs_tui.store.records import EmbeddingRow, Track, blob_to_vector, vector_to_blob
from mrs_tui.store.schema import next_change

# A claim outlives a dead process only if its pid was reused; the lease bounds that case.
CLAIM_LEASE_S = 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddingsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store

    def put_embeddings(self, rows: Iterable[EmbeddingRow]) -> int:
        """Store results (replacing older ones of the same model) and release their claims."""
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
            change = next_change(conn)
            conn.executemany(
                """INSERT INTO embeddings
                   (track_id, backend, version, dim, vector, error, extras, seconds, created_at, change)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (track_id, backend, version) DO UPDATE SET
                   dim = excluded.dim, vector = excluded.vector, error = excluded.error,
                   extras = excluded.extras, seconds = excluded.seconds,
                   created_at = excluded.created_at, change = excluded.change""",
                [(*v, change) for v in values],
            )
            conn.executemany(
                "DELETE FROM claims WHERE track_id = ? AND backend = ? AND version = ?",
                [v[:3] for v in values],
            )
        return len(values)

    # -- claims: concurrent indexers split the work ------------------------------------------------

    def claim(self, track_id: int, models: Iterable[tuple[str, str]], lease_s: float = CLAIM_LEASE_S) -> list[int]:
        """Take on analysing a track with some models; returns the positions of `models` won.

        A model is won when it has no stored result and no live claim by another process. A
        claim is live until its lease ends, or until its process has died (every process using
        one SQLite file in WAL mode runs on the same machine, so the pid tells).
        """
        me, pid, now = socket.gethostname(), os.getpid(), time.time()
        won = []
        with self.write() as conn:
            for position, (backend, version) in enumerate(models):
                key = [track_id, backend, version]
                if conn.execute(
                    "SELECT 1 FROM embeddings WHERE track_id = ? AND backend = ? AND version = ?", key
                ).fetchone():
                    continue
                held = conn.execute(
                    "SELECT owner, pid, expires_at FROM claims WHERE track_id = ? AND backend = ? AND version = ?",
                    key,
                ).fetchone()
                if held is not None and (held[0], held[1]) != (me, pid) and held[2] > now and _alive(held[1]):
                    continue
                conn.execute(
                    """INSERT INTO claims (track_id, backend, version, owner, pid, expires_at) VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (track_id, backend, version) DO UPDATE SET
                       owner = excluded.owner, pid = excluded.pid, expires_at = excluded.expires_at""",
                    [*key, me, pid, now + lease_s],
                )
                won.append(position)
        return won

    def release_claims(self) -> None:
        """Give up this process's unfinished claims (a cancelled or failed run)."""
        with self.write() as conn:
            conn.execute("DELETE FROM claims WHERE owner = ? AND pid = ?", [socket.gethostname(), os.getpid()])

    def change_count(self) -> int:
        """The change counter: it moves on every embedding written or deleted and every status change."""
        return self.conn.execute("SELECT value FROM changes WHERE id = 1").fetchone()[0]

    def database_uid(self) -> str:
        return self.conn.execute("SELECT uid FROM changes WHERE id = 1").fetchone()[0]

    def embedding_matrix(
        self, backend: str, version: str, *, since_change: int = -1
    ) -> tuple[np.ndarray, np.ndarray, set[int]]:
        """(track ids, float32 matrix) of the searchable vectors of one model, and the tracks changed.

        With `since_change`, only rows written since that value of the change counter are read;
        the set holds every track whose vector or status changed since (searchable or not), so a
        catalogue can tell an addition from a replacement.
        """
        if since_change < 0:
            cursor = self.conn.execute(
                """SELECT e.track_id, e.vector, t.status FROM embeddings e JOIN tracks t ON t.id = e.track_id
                   WHERE e.backend = ? AND e.version = ? ORDER BY e.track_id""",
                [backend, version],
            )
        else:
            # Two index searches (the vectors written since; the tracks changed since, with their
            # vectors) instead of one OR, which SQLite answers by reading every vector of the model.
            cursor = self.conn.execute(
                """SELECT e.track_id, e.vector, t.status FROM embeddings e JOIN tracks t ON t.id = e.track_id
                   WHERE e.backend = ? AND e.version = ? AND e.change > ?
                   UNION
                   SELECT e.track_id, e.vector, t.status FROM tracks t CROSS JOIN embeddings e ON e.track_id = t.id
                   WHERE t.change > ? AND e.backend = ? AND e.version = ?
                   ORDER BY 1""",
                [backend, version, since_change, since_change, backend, version],
            )
        rows = cursor.fetchall()
        changed = {r[0] for r in rows}
        rows = [r for r in rows if r[1] is not None and r[2] == "ok"]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), changed
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        matrix = np.stack([blob_to_vector(r[1]) for r in rows]).astype(np.float32, copy=False)
        return ids, matrix, changed

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

    def embedding_extras(self, track_ids: Iterable[int], backend: str, version: str) -> dict[int, dict]:
        """Extras (such as tags) stored with the vectors of these tracks, looked up by key."""
        cursor = self.conn.execute(
            """SELECT track_id, extras FROM embeddings
               WHERE track_id IN (SELECT value FROM json_each(?)) AND backend = ? AND version = ? AND extras IS NOT NULL""",
            [json.dumps([int(t) for t in track_ids]), backend, version],
        )
        return {track_id: json.loads(extras) for track_id, extras in cursor}

    def embedded_track_ids(
        self, backend: str, version: str, *, include_failed: bool = True, among: Iterable[int] | None = None
    ) -> set[int]:
        """Tracks with a stored result of this model (`among`: only those of these tracks, by key)."""
        failed = "" if include_failed else "AND vector IS NOT NULL"
        params: list = [backend, version]
        subset = ""
        if among is not None:
            subset = "AND track_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(t) for t in among]))
        cursor = self.conn.execute(
            f"SELECT track_id FROM embeddings WHERE backend = ? AND version = ? {failed} {subset}", params
        )
        return {r[0] for r in cursor}

    def tracks_needing(self, backend: str, version: str, ids: Iterable[int] | None = None) -> list[Track]:
        """Tracks with status ok and no stored result (vector or failure) for this model."""
        done = self.embedded_track_ids(backend, version)
        candidates = self.tracks(status="ok", ids=ids)
        return [t for t in candidates if t.id not in done]

    def embedding_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(backend, version) -> (vectors stored, failures), kept until the database is written."""
        token = self.write_token()
        cached = self._embedding_counts
        if cached is not None and cached[0] == token:
            return dict(cached[1])
        counts: dict[tuple[str, str], list[int]] = {}
        for backend, version, failed, n in self.conn.execute(
            """SELECT backend, version, vector IS NULL, count(*) FROM embeddings
               GROUP BY backend, version, vector IS NULL"""  # answered by the embeddings_stored index
        ):
            counts.setdefault((backend, version), [0, 0])[1 if failed else 0] = n
        result = {key: (ok, bad) for key, (ok, bad) in counts.items()}
        self._embedding_counts = (token, result)
        return dict(result)

    def vector_count(self, backend: str, version: str) -> int:
        """Stored vectors of one model for tracks whose status is ok."""
        # All the model's vectors, less those of the few tracks that are not ok: both from indexes
        # (`(vector IS NULL) = 0` is the indexed expression; `vector IS NOT NULL` reads each row).
        return self.conn.execute(
            """SELECT (SELECT count(*) FROM embeddings WHERE backend = ? AND version = ? AND (vector IS NULL) = 0)
                    - (SELECT count(*) FROM tracks t CROSS JOIN embeddings e ON e.track_id = t.id
                       WHERE t.status != 'ok' AND e.backend = ? AND e.version = ? AND (e.vector IS NULL) = 0)""",
            [backend, version, backend, version],
        ).fetchone()[0]

    def searchable_track_ids(self, backend: str, version: str) -> np.ndarray:
        """The tracks `vector_count` counts, as ids: how a catalogue learns which vectors were deleted."""
        rows = self.conn.execute(
            """SELECT e.track_id FROM embeddings e JOIN tracks t ON t.id = e.track_id
               WHERE e.backend = ? AND e.version = ? AND e.vector IS NOT NULL AND t.status = 'ok'""",
            [backend, version],
        ).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def delete_failed_embeddings(self, track_ids: Iterable[int]) -> int:
        """Forget stored backend failures of these tracks, so the next run tries them again."""
        with self.write() as conn:
            next_change(conn)
            rows = conn.execute(
                "DELETE FROM embeddings WHERE vector IS NULL AND track_id IN (SELECT value FROM json_each(?))",
                [json.dumps([int(t) for t in track_ids])],
            )
        return rows.rowcount

    def delete_embeddings(self, track_id: int) -> None:
        with self.write() as conn:
            next_change(conn)
            conn.execute("DELETE FROM embeddings WHERE track_id = ?", [track_id])
