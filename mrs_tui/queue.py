"""The play queue: what plays next, what played before, and why each track is there.

Entries before `position` have been played (so *previous* works), the entry at `position`
is playing, the rest are upcoming. Every entry keeps why it was added ("added by you",
"radio: knn on musicnn, similar to ...") and, for suggestions, the diversity rules it passed.
No Textual here: the TUI's queue screen and the tests drive the same object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count

_ids = count(1)


@dataclass
class QueueEntry:
    track_id: int
    why: str = "added by you"
    rule: str = ""  # the diversity rules that let a suggestion through
    source: str = "user"  # "user", "radio", "playlist", "suggestions"
    score: float | None = None
    uid: int = field(default_factory=lambda: next(_ids))  # tells two entries of one track apart

    def explanation(self) -> str:
        return self.why + (f" · let through: {self.rule}" if self.rule else "")


class PlayQueue:
    def __init__(self) -> None:
        self.entries: list[QueueEntry] = []
        self.position = -1  # index of the entry playing; -1 before the first

    # -- reading -----------------------------------------------------------------------------

    @property
    def current(self) -> QueueEntry | None:
        return self.entries[self.position] if 0 <= self.position < len(self.entries) else None

    @property
    def upcoming(self) -> list[QueueEntry]:
        return self.entries[self.position + 1 :]

    @property
    def played(self) -> list[QueueEntry]:
        return self.entries[: max(self.position, 0)]

    def __len__(self) -> int:
        return len(self.entries)

    def track_ids(self) -> list[int]:
        return [e.track_id for e in self.entries]

    # -- editing -----------------------------------------------------------------------------

    def add(
        self, entries: Iterable[QueueEntry | int], *, why: str = "added by you", source: str = "user"
    ) -> list[QueueEntry]:
        """Append at the end; plain track ids become entries with `why`."""
        added = [e if isinstance(e, QueueEntry) else QueueEntry(int(e), why, source=source) for e in entries]
        self.entries.extend(added)
        return added

    def play_next(self, track_id: int, *, why: str = "added by you (play next)") -> QueueEntry:
        entry = QueueEntry(track_id, why)
        self.entries.insert(self.position + 1, entry)
        return entry

    def move(self, index: int, offset: int) -> int:
        """Move the upcoming entry at `index` by `offset` places among the upcoming; returns its new index."""
        self._check_upcoming(index)
        target = max(self.position + 1, min(len(self.entries) - 1, index + offset))
        entry = self.entries.pop(index)
        self.entries.insert(target, entry)
        return target

    def remove(self, index: int) -> QueueEntry:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"no queue entry {index}")
        entry = self.entries.pop(index)
        if index < self.position:
            self.position -= 1
        elif index == self.position:
            self.position -= 1  # the next advance plays what followed it
        return entry

    def clear(self) -> int:
        """Drop every upcoming entry (the playing one and the played ones stay); returns how many."""
        dropped = len(self.upcoming)
        del self.entries[self.position + 1 :]
        return dropped

    def _check_upcoming(self, index: int) -> None:
        if not self.position < index < len(self.entries):
            raise IndexError(f"queue entry {index} is not upcoming")

    # -- moving through it -------------------------------------------------------------------

    def advance(self) -> QueueEntry | None:
        """Move to the next entry and return it (None at the end, position unchanged)."""
        if self.position + 1 >= len(self.entries):
            return None
        self.position += 1
        return self.entries[self.position]

    def previous(self) -> QueueEntry | None:
        if self.position <= 0:
            return None
        self.position -= 1
        return self.entries[self.position]

    def jump(self, index: int) -> QueueEntry:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"no queue entry {index}")
        self.position = index
        return self.entries[index]
