"""App-wide messages: how workers (threads) report to the UI without touching widgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from mrs_tui.engine import BackendRow, SuggestionList, TrackFacts
    from mrs_tui.indexing import IndexProgress, IndexReport
    from mrs_tui.library import ScanReport
    from mrs_tui.player import PlaybackEnded
    from mrs_tui.store import Play, Track
    from mrs_tui.training import ModelInfo


@dataclass
class EngineReady(Message):
    """The database is open and the track list is read."""

    tracks: list[Track]
    played: set[int]
    analysed: set[int] = field(default_factory=set)  # tracks with a vector of the current backend
    serving: str = ""  # which measured winners serve each mode, when the user applied them
    complete: bool = True  # False: the first page only, the whole list follows (LibraryLoaded)


@dataclass
class LibraryLoaded(Message):
    """The track list, read again in a worker (after a scan, analysis or a backend change)."""

    tracks: list[Track]
    analysed: set[int]
    played: set[int]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LibraryLoaded)


@dataclass
class ScanProgressed(Message):
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ScanProgressed)


@dataclass
class ScanFinished(Message):
    report: ScanReport


@dataclass
class IndexProgressed(Message):
    backend: str
    progress: IndexProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IndexProgressed)


@dataclass
class IndexFinished(Message):
    report: IndexReport


@dataclass
class SuggestionsReady(Message):
    result: SuggestionList
    request: int  # which request this answers (older answers are ignored)


@dataclass
class PreviewStarted(Message):
    track: Track


@dataclass
class PreviewEnded(Message):
    ended: PlaybackEnded


@dataclass
class Notice(Message):
    """Something to tell the user once (e.g. why previews are off)."""

    text: str
    severity: str = "information"


@dataclass
class TrainProgressed(Message):
    recommender: str
    done: float
    total: float
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainProgressed) and message.recommender == self.recommender


@dataclass
class TrainFinished(Message):
    recommender: str
    backend: str
    summary: str  # what the user is told: trained on how many plays, or why not
    trained: bool


@dataclass
class TrackFactsReady(Message):
    """Plays and audio tags of the highlighted track, read in a worker."""

    facts: TrackFacts


@dataclass
class PlayRecorded(Message):
    """A play, skip, like or dislike is in the history (written in a worker)."""

    play: Play


@dataclass
class BackendRowsReady(Message):
    """The backend picker's rows, read in a worker."""

    rows: list[BackendRow]


@dataclass
class WeightsFetched(Message):
    """A backend's weights were downloaded (after the user said yes), or why they were not."""

    backend: str
    error: str | None = None
    row: BackendRow | None = None  # its picker row after the download, read in the worker


@dataclass
class ModelsInfoReady(Message):
    """The recommender picker's lines, read in a worker."""

    infos: dict[str, ModelInfo | None]
