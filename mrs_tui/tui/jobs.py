"""The app's running jobs on one board: every worker of a job group joins it while it runs.

Workers report progress through their own messages (scan, analysis, training, evaluation);
this mixin moves the board with them (plain `on_*` handlers: Textual calls those of every
class in the app's MRO, the app's own as well) and re-reads it once a second, so ETAs keep moving when a
job goes quiet. Cancelling a row calls the worker's own `cancel()` (the watch: its stop event).
Files a run could not read are named in a notification when it ends.
"""

from __future__ import annotations

from contextlib import suppress

from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from mrs_tui.jobs import JobBoard
from mrs_tui.tui import messages as msg

JOB_TITLES = {  # worker group -> what the jobs screen calls it until its progress says more
    "index": "Scanning the library",
    "train": "Training",
    "watch": "Watching the library folder",
    "evaluate": "Evaluation",
    "import": "Import",
    "weights": "Downloading weights",
}
WORKER_TITLES = {"plan_import": "Import: reading the files (dry run)", "apply_import": "Import: writing the plays"}
FAILED_FILES_NAMED = 3


class JobsMixin:
    """Needs the app's `_busy`, `stop_watching`, `main` and `notify`."""

    def init_jobs(self) -> None:
        self.jobs = JobBoard()

    def start_job_clock(self) -> None:
        self.set_interval(1.0, self.tick_jobs)

    def _canceller(self, worker: Worker):
        if worker.group == "watch":
            return lambda: self.stop_watching(by_user=True)
        if worker.name == "apply_import":  # one transaction: it cannot stop half way
            return None
        return worker.cancel

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.track_worker(event.worker, event.state)

    def track_worker(self, worker: Worker, state: WorkerState) -> None:
        """Also called by screens for their own workers (their state changes do not bubble)."""
        group = worker.group
        if group not in JOB_TITLES:
            return
        if state == WorkerState.RUNNING:
            title = WORKER_TITLES.get(worker.name, JOB_TITLES[group])
            if group == "watch" and getattr(self, "folders", None):
                title = "Watching " + ", ".join(str(f) for f in self.folders)
            self.jobs.start(group, title, self._canceller(worker))
        elif worker.is_finished:
            job = self.jobs.jobs.get(group)
            if job is not None and state == WorkerState.CANCELLED and self._busy(group):
                job.stopping = True  # its thread runs until it sees the cancel: tick_jobs drops it then
            else:
                self.jobs.finish(group)
        self.jobs_changed()

    def on_scan_progressed(self, message: msg.ScanProgressed) -> None:
        self.jobs.progress("index", message.done, message.total, "files looked at", title="Scanning the library")

    def on_index_progressed(self, message: msg.IndexProgressed) -> None:
        p = message.progress
        names = ", ".join(b.name for b in p.backends) or message.backend
        failed = f" · {p.failed} unreadable" if p.failed else ""
        self.jobs.progress("index", p.done, p.total, f"{p.rate:.1f} tracks/s{failed}", title=f"Analysing with {names}")
        if len(p.backends) > 1:
            for b in p.backends:
                self.jobs.progress(
                    f"index/{b.name}", b.done, b.total, f"{b.seconds:.0f} s spent", title=f"  {b.name}", parent="index"
                )

    def on_train_progressed(self, message: msg.TrainProgressed) -> None:
        self.jobs.progress(
            "train", message.done, message.total or None, message.text, title=f"Training {message.recommender}"
        )

    def on_eval_progressed(self, message) -> None:
        self.jobs.progress("evaluate", message.done, message.total or None, message.text, title="Evaluation")

    def on_scan_finished(self, message: msg.ScanFinished) -> None:
        self._name_unreadable(message.report.failed, "Cannot read")

    def on_index_finished(self, message: msg.IndexFinished) -> None:
        self._name_unreadable(message.report.failed, "Cannot analyse")

    def _name_unreadable(self, failed: list[tuple[str, str]], title: str) -> None:
        if not failed:
            return
        lines = [f"{path}: {reason}" for path, reason in failed[:FAILED_FILES_NAMED]]
        if len(failed) > FAILED_FILES_NAMED:
            lines.append(f"and {len(failed) - FAILED_FILES_NAMED} more (marked unreadable in the library)")
        self.notify("\n".join(lines), title=title, severity="warning", timeout=15)

    def cancel_job(self, key: str) -> None:
        title = self.jobs.cancel(key)
        if title is None:
            self.notify("that job cannot be cancelled", severity="warning")
            return
        self.notify(f"stopping: {title.strip()}", title="Jobs")
        self.jobs_changed()

    def tick_jobs(self) -> None:
        for key, job in list(self.jobs.jobs.items()):
            if job.stopping and "/" not in key and not self._busy(key):
                self.jobs.finish(key)
        self.jobs_changed()

    def jobs_changed(self) -> None:
        from mrs_tui.tui.screens.jobs import JobsScreen

        main = self.main
        if main is not None and main.is_mounted:
            with suppress(NoMatches):  # the main screen is being torn down
                main.index_status.refresh_eta()
        for screen in self.screen_stack:
            if isinstance(screen, JobsScreen):
                screen.show_jobs()
