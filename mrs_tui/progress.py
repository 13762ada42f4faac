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


class MovingEta:
    """Seconds left from a recent rate that decays while the job does not move.

    A job's own estimate ("tracks left × seconds per track so far") only changes when the job
    reports, so a bar that stops moving keeps showing its last figure. Here the rate is an
    average that forgets old steps (a step's weight halves every `half_life` seconds), and the
    estimate is read on a timer: between reports it counts down; once the next report is
    overdue (twice the usual gap between reports) the rate itself halves every `half_life`
    seconds, so a stalled bar shows a growing ETA, and past `stall_after` seconds the word
    "stalled".
    """

    def __init__(
        self, *, half_life: float = 10.0, stall_after: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.half_life = half_life
        self.stall_after = stall_after
        self.clock = clock
        self.done = 0.0
        self.total: float | None = None
        self.rate: float | None = None  # steps per second, recent steps weigh more
        self.gap: float | None = None  # usual seconds between reports that moved the job
        self.last_step = clock()

    def update(self, done: float, total: float | None) -> None:
        now = self.clock()
        self.total = total
        if done < self.done:  # a job that starts over (a new phase) starts a new estimate
            self.done, self.rate, self.gap, self.last_step = done, None, None, now
        elif done > self.done:
            span = max(now - self.last_step, 1e-6)
            step_rate = (done - self.done) / span
            if self.rate is None:
                self.rate, self.gap = step_rate, span
            else:
                keep = 0.5 ** (span / self.half_life)
                self.rate = keep * self.rate + (1 - keep) * step_rate
                self.gap = keep * self.gap + (1 - keep) * span
            self.done, self.last_step = done, now

    def since_step(self) -> float:
        """Seconds since the job last moved (since it started, before its first step)."""
        return self.clock() - self.last_step

    @property
    def stalled(self) -> bool:
        return self.since_step() >= self.stall_after

    def seconds_left(self) -> float | None:
        """None until the job has moved once (or when it has no total)."""
        if self.total is None or self.rate is None or self.rate <= 0:
            return None
        left = max(self.total - self.done, 0.0)
        if left == 0:
            return 0.0
        since = self.since_step()
        overdue_after = 2 * max(self.gap or 0.0, 1 / self.rate)
        if since <= overdue_after:
            return max(left / self.rate - since, 0.0)
        decayed = self.rate * 0.5 ** ((since - overdue_after) / self.half_life)
        return left / decayed

    def describe(self) -> str:
        """ "ETA 1:05", "ETA 12:30 · stalled 0:40", or "" while there is nothing to go on."""
        left = self.seconds_left()
        stalled = f"stalled {clock_text(self.since_step())}" if self.stalled else ""
        if left is None:
            return stalled
        return f"ETA {clock_text(left)}" + (f" · {stalled}" if stalled else "")


def clock_text(seconds: float) -> str:
    """ "0:04", "12:30", "1:02:03"."""
    if seconds >= 100 * 3600:
        return "over 99 h"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
