"""Every background job the app runs, in one list: what it is, how far it got, when it ends.

The app's workers (analysis per backend, the folder watch, training, evaluation, imports)
each get a `Job` while they run; their progress messages move it, and the jobs screen reads
`JobBoard.rows()` on a timer, so the ETAs keep moving while a job reports nothing. Cancelling
goes through the callable each job was registered with (the worker's own cancel, or the watch's
stop event): the board keeps no second set of events. A job whose cancel was asked for stays
listed as "stopping" until its thread has let go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mrs_tui.progress import MovingEta, clock_text


@dataclass
class Job:
    key: str
    title: str
    cancel: Callable[[], None] | None
    started: float
    done: float = 0.0
    total: float | None = None
    detail: str = ""
    stopping: bool = False
    eta: MovingEta = field(default_factory=MovingEta)


@dataclass(frozen=True)
class JobRow:
    """One line of the jobs screen."""

    key: str
    title: str
    progress: str  # "40/120" or "" for jobs that have no end (the watch)
    fraction: float | None
    eta: str
    detail: str
    running_for: str
    cancellable: bool


class JobBoard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.jobs: dict[str, Job] = {}

    def start(self, key: str, title: str, cancel: Callable[[], None] | None = None) -> Job:
        job = Job(key, title, cancel, self.clock(), eta=MovingEta(clock=self.clock))
        self.jobs[key] = job
        return job

    def progress(
        self,
        key: str,
        done: float,
        total: float | None,
        detail: str = "",
        *,
        title: str | None = None,
        parent: str | None = None,
    ) -> None:
        """Move job `key`. A part of a running job (`parent`) joins the board, cancelled with it;
        news of a job that is not running (a late message, after it finished) changes nothing."""
        job = self.jobs.get(key)
        if job is None:
            owner = self.jobs.get(parent) if parent else None
            if owner is None:
                return
            job = self.start(key, title or key, owner.cancel)
        if title:
            job.title = title
        job.done, job.total, job.detail = done, total, detail
        job.eta.update(done, total)

    def finish(self, key: str) -> None:
        """Job `key` and the jobs it owns (`key/...`) are over."""
        for name in [k for k in self.jobs if k == key or k.startswith(key + "/")]:
            del self.jobs[name]

    def cancel(self, key: str) -> str | None:
        """Ask job `key` to stop; the title of what was cancelled, or None if it cannot be."""
        job = self.jobs.get(key)
        if job is None or job.cancel is None:
            return None
        job.cancel()
        owner = key.split("/", 1)[0]
        for name, other in self.jobs.items():
            if name == owner or name.startswith(owner + "/"):
                other.stopping = True
        return job.title

    def rows(self) -> list[JobRow]:
        now = self.clock()
        rows = []
        for job in self.jobs.values():
            if job.total:
                progress = f"{job.done:g}/{job.total:g}"
                fraction = min(job.done / job.total, 1.0)
            else:
                progress, fraction = (f"{job.done:g}" if job.done else ""), None
            rows.append(
                JobRow(
                    key=job.key,
                    title=job.title,
                    progress=progress,
                    fraction=fraction,
                    eta="stopping…" if job.stopping else job.eta.describe(),
                    detail=job.detail,
                    running_for=clock_text(now - job.started),
                    cancellable=job.cancel is not None and not job.stopping,
                )
            )
        return rows

    def eta_text(self, key: str) -> str:
        job = self.jobs.get(key)
        return job.eta.describe() if job is not None and not job.stopping else ""
