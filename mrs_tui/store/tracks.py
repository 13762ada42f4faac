"""Tracks: files of the library, their tags and status."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

import sqlite_utils

from mrs_tui.store.connection import LockedConnection
from mrs_tui.store.records import Track, path_to_db, search_words, searchable
from mrs_tui.store.schema import next_change

# The library's order (NULL artists last), as the columns of the `tracks_library_order` index.
LIBRARY_ORDER = (
    "order_artist_missing, order_artist, order_album_known, order_album, order_title_known, order_title, path"
)
# The same order for a whole list: "+" keeps SQLite from walking the index, whose row-by-row
# lookups cost several times a scan and a sort of what matched.
LIBRARY_SORT = ", ".join(f"+{column}" for column in LIBRARY_ORDER.split(", "))
# The shared track search inside a query: `search_matches` registered as an SQL function.
SEARCH_CLAUSE = "track_matches(?, title, artist, album, genre, path)"
# A search's rows: the tracks whose indexed text holds every long enough word (see migration 10),
# a superset of what `SEARCH_CLAUSE` keeps. CROSS JOIN makes SQLite start from the index: asked
# as `id IN (...)`, it prefers reading the whole table (or walking it in order to fill a page).
INDEX_CANDIDATES = "track_search CROSS JOIN tracks ON tracks.id = track_search.rowid"
INDEX_MATCH = "track_search MATCH ?"
# A trigram index finds only words of at least three characters; shorter ones are left to the search.
SHORTEST_INDEXED_WORD = 3


def _index_query(search: str) -> str | None:
    """The index query for the words of `search` it can look up (each a quoted phrase, all
    required), None where there is none and every track is a candidate."""
    terms = [term for term in map(searchable, search_words(search)) if len(term) >= SHORTEST_INDEXED_WORD]
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms) or None


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
        search: str | None = None,
    ) -> list[Track]:
        """Tracks in the library's order; `search` keeps those `Track.matches`."""
        tables, where, params = self._track_filter(status=status, under=under, ids=ids, search=search)
        sql = f"SELECT tracks.* FROM {tables} {where} ORDER BY {LIBRARY_SORT}"
        return [Track.from_row(row) for row in self.db.query(sql, params)]

    def track_page(
        self,
        after: Track | None = None,
        limit: int = 200,
        *,
        status: str | Sequence[str] | None = None,
        search: str | None = None,
    ) -> list[Track]:
        """Up to `limit` tracks in the library's order, starting right after `after` (keyset paging:
        an index seek, whatever the page's depth)."""
        tables, where, params = self._track_filter(status=status, search=search)
        if after is not None:
            where += (" AND " if where else "WHERE ") + f"({LIBRARY_ORDER}) > (?, ?, ?, ?, ?, ?, ?)"
            params += list(after.order_key())
        sql = f"SELECT tracks.* FROM {tables} {where} ORDER BY {LIBRARY_ORDER} LIMIT ?"
        return [Track.from_row(row) for row in self.db.query(sql, [*params, int(limit)])]

    def _track_filter(
        self,
        *,
        status: str | Sequence[str] | None = None,
        under: str | None = None,
        ids: Iterable[int] | None = None,
        search: str | None = None,
    ) -> tuple[str, str, list]:
        """The tables to select tracks from, the WHERE clause that keeps those asked for, and its
        parameters."""
        tables, clauses, params = "tracks", [], []
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
        if search and search.split():
            index_query = _index_query(search)
            if index_query:
                tables = INDEX_CANDIDATES
                clauses.append(INDEX_MATCH)
                params.append(index_query)
            clauses.append(SEARCH_CLAUSE)
            params.append(path_to_db(search))  # a word typed in another encoding is bound as bytes
        return tables, (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def tracks_by_hash(self, content_hash: str) -> list[Track]:
        rows = self.db.query("SELECT * FROM tracks WHERE content_hash = ?", [content_hash])
        return [Track.from_row(row) for row in rows]

    def track_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
