"""Python's cyclic garbage collector, kept off the keypress path.

A full collection walks every live object. With a 10k-track library loaded that takes
150–200 ms, and it runs wherever allocation happens to cross the collector's threshold: in
the middle of a keypress (measured: most of the compare screen's p95 was such pauses). So
the app collects when it is idle and freezes what survives (`gc.freeze`); the automatic
collections that still happen while keys arrive then walk only the objects made since.

- After a short pause in the input: collect what is not frozen (the few thousand objects
  of a screen just closed: milliseconds) and freeze the survivors.
- After a longer pause, at most once a minute: unfreeze and collect everything, so cycles
  that died after being frozen (a screen that was open at the last pause) are freed too.
"""

from __future__ import annotations

import gc
import time

from textual import events

CHECK_EVERY = 0.1  # seconds
QUICK_AFTER = 0.2  # seconds without a key or mouse event: a quick pass costs a few ms
FULL_AFTER = 5.0
FULL_AT_MOST_EVERY = 60.0


class IdleCollectionMixin:
    """For the App: `start_idle_collection()` on mount; input events postpone the collection."""

    _last_input = 0.0
    _collected_since_input = False
    _last_full = float("-inf")

    def start_idle_collection(self) -> None:
        self._last_input = time.monotonic()
        self.set_interval(CHECK_EVERY, self._collect_when_idle)

    def idle_for(self) -> float:
        """Seconds since the last key or mouse event."""
        return time.monotonic() - self._last_input

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self._last_input = time.monotonic()
            self._collected_since_input = False
        await super().on_event(event)

    def _collect_when_idle(self) -> None:
        now = time.monotonic()
        idle = self.idle_for()
        if idle >= FULL_AFTER and now - self._last_full >= FULL_AT_MOST_EVERY:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._last_full = now
            self._collected_since_input = True
        elif idle >= QUICK_AFTER and not self._collected_since_input:
            gc.collect()  # frozen objects are not walked
            gc.freeze()
            self._collected_since_input = True

    def on_unmount(self) -> None:
        gc.unfreeze()  # back to plain collections: tests run many apps in one process
