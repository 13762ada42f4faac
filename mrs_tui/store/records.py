"""Plain records read from the database, and the on-disk form of vectors."""

from __future__ import annotations

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

    @property
    def display_title(self) -> str:
        return self.title or Path(self.path).stem

    def matches(self, search: str) -> bool:
        """The track search of the app and the CLI: every word of `search` occurs, in any order and
        case, in the title, artist, album, genre or path."""
        haystack = " ".join(filter(None, (self.title, self.artist, self.album, self.genre, self.path))).lower()
        return all(word in haystack for word in search.lower().split())

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
