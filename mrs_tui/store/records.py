"""Plain records read from the database, and the on-disk form of vectors."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRACK_STATUSES = ("ok", "failed", "missing")
PLAY_EVENTS = ("play", "complete", "skip", "like", "dislike")
# Events that say the listener wanted the track; skips and dislikes are kept but not positives.
POSITIVE_EVENTS = ("play", "complete", "like")


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
    mbid: str | None = None  # MusicBrainz recording id from the tags

    @property
    def display_title(self) -> str:
        return self.title or readable_path(Path(self.path).stem)

    @property
    def display_path(self) -> str:
        return readable_path(self.path)

    def matches(self, search: str) -> bool:
        """The track search of the app and the CLI (see `search_matches`)."""
        return search_matches(search, self.title, self.artist, self.album, self.genre, self.path)

    def order_key(self) -> tuple:
        """Where the track stands in the library's order (the `tracks_library_order` index's key)."""
        return (
            self.artist is None,
            self.artist or "",
            self.album is not None,
            self.album or "",
            self.title is not None,
            self.title or "",
            path_to_db(self.path),
        )

    @classmethod
    def from_row(cls, row: dict) -> Track:
        fields = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        if "path" in fields:
            fields["path"] = path_from_db(fields["path"])
        return cls(**fields)


def search_matches(search: str | bytes, *fields: str | bytes | None) -> bool:
    """The one track search: every word of `search` occurs, in any order and case, in the title,
    artist, album, genre or path. The store runs this same function inside its queries (where
    text that is not UTF-8 arrives as bytes, see `path_to_db`)."""
    words = search_words(search)
    if not words:
        return True
    haystack = _haystack(fields)
    return all(word in haystack for word in words)


def search_words(search: str | bytes) -> list[str]:
    """The words `search_matches` looks for, lowered."""
    return (os.fsdecode(search) if isinstance(search, bytes) else search).lower().split()


def _haystack(fields: tuple[str | bytes | None, ...]) -> str:
    return " ".join(os.fsdecode(f) if isinstance(f, bytes) else f for f in fields if f).lower()


# Surrogate escapes: how Python holds the bytes of a path that are not UTF-8 (see `path_to_db`).
_UNENCODABLE = re.compile("[\ud800-\udfff]")


def searchable(text: str) -> str:
    """`text` as UTF-8 can hold it, one character at a time: a surrogate becomes a fixed ASCII
    spelling. Character by character, so a substring stays a substring."""
    return _UNENCODABLE.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def search_index_text(*fields: str | bytes | None) -> str:
    """What the search index holds for a track: the haystack of `search_matches`, through
    `searchable`. A word that `search_matches` finds is, through `searchable`, a substring of
    this text, so the index's candidates include every match whatever the case folding or the
    encoding of the path. Changing what it returns leaves older entries as they were (they are
    removed by rowid): a migration should then rebuild the index."""
    return searchable(_haystack(fields))


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


# File names are bytes on POSIX. Python holds a name that is not valid UTF-8 (a Latin-1 file
# system, an old zip) as a str with surrogate escapes, which SQLite's TEXT cannot store: such a
# path is stored as its raw bytes (a BLOB) instead, so it round-trips exactly.


def path_to_db(path: str) -> str | bytes:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_from_db(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def readable_path(path: str) -> str:
    """`path` printable anywhere: bytes that are not UTF-8 are shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
