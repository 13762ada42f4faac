"""The app's watch on its library folders: new files are analysed and suggested without a key press.

The watch starts once the first scan is over, and again after any later scan if it was
stopped (cancelled on the jobs screen); a file that arrived after that scan started
but before the watch was in place would be seen by neither, so when the watch is ready the
folders are walked once for audio files changed since the scan started (a stat per file, no
database) and those go through the same path as the watch's own batches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.message import Message


@dataclass
class LibraryFilesChanged(Message):
    paths: set[Path]


class WatchMixin:
    """Needs the app's `folder`, `folders`, `engine`, `indexing` and `start_indexing`."""

    def start_watching(self, *, after_scan: bool = False) -> None:
        if self.folder is None or self.engine is None or getattr(self, "stop_watch", None) is not None:
            return
        if self.indexing and not after_scan:
            return  # after the first scan (on_index_finished): it sees the folder as it is now anyway
        self.stop_watch = threading.Event()
        self.watch_ready = threading.Event()  # set once files written from then on are seen
        self.watch_library(list(self.folders))

    def on_index_finished(self, _message) -> None:
        self.start_watching(after_scan=True)  # its worker is still winding down: `indexing` is True

    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def watch_library(self, folders: list[Path]) -> None:
        from mrs_tui.watch import changed_since, watch_folders

        stop = self.stop_watch
        since = getattr(self, "scan_started_at", None)

        def changed(paths: set[Path]) -> None:
            while self.indexing and not stop.is_set():  # one re-scan after the running one
                time.sleep(0.2)
            if not stop.is_set():
                self.post_message(LibraryFilesChanged(paths))

        def ready() -> None:
            self.watch_ready.set()
            if since is not None:
                missed = changed_since(folders, since)
                if missed:
                    changed(missed)

        try:
            watch_folders(folders, changed, stop, on_ready=ready)
        finally:
            if self.stop_watch is stop:  # stopped (a cancel from the jobs screen): it may start again
                self.stop_watch = None

    def on_library_files_changed(self, message: LibraryFilesChanged) -> None:
        if self.indexing:  # started meanwhile: it will see the files itself
            return
        names = sorted(p.name for p in message.paths)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        self.notify(f"files changed: {shown}; scanning", title="Library")
        self.start_indexing()

    def on_unmount(self) -> None:
        self.stop_watching()  # the watch thread polls this event: the app can exit

    def stop_watching(self, *, by_user: bool = False) -> None:
        stop = getattr(self, "stop_watch", None)
        if stop is not None:
            stop.set()
            if by_user:
                self.notify("the watch is off until the next scan: i scans the folders and watches them again")
