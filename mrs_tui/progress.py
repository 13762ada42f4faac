"""Progress reporting shared by the app, the CLI and the core: one throttle, one sub-range.

Long jobs report ``progress(done, total, message)`` many times a second; a screen or a
terminal wants a few updates per second at most (toolong merges its scan messages the same
way). `Throttle` decides when an update goes out. `subrange` maps a sub-task's own
``(done, total)`` into a slice of its parent's range, so a grid cell's fitting and ranking
each move the parent's bar through their half of the cell.

Light on purpose: the TUI imports it before its first paint.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ProgressFn = Callable[[float, float, str], None]

DEFAULT_INTERVAL = 0.2  # seconds: about five updates a second


class Throttle:
    """True at most once per `interval` seconds; `final` updates always pass."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last: float | None = None

    def ready(self, *, final: bool = False) -> bool:
        now = self.clock()
        if final or self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False

    def wrap(self, report: Callable[..., None]) -> Callable[..., None]:
        """`report`, called only when the throttle lets an update through."""

        def throttled(*args, **kwargs) -> None:
            if self.ready():
                report(*args, **kwargs)

        return throttled


def subrange(report: ProgressFn | None, start: float, span: float, total: float, label: str = "") -> ProgressFn | None:
    """A progress function for a sub-task that fills ``[start, start + span]`` of a parent's `total`.

    The sub-task's message is shown after `label` ("fitting knn: epoch 3"); a sub-task that
    reports a zero total counts as not started.
    """
    if report is None:
        return None

    def child(done: float, of: float, message: str = "") -> None:
        share = min(max(done / of, 0.0), 1.0) if of else 0.0
        text = f"{label}: {message}" if label and message else (label or message)
        report(start + span * share, total, text)

    return child
