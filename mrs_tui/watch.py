"""Watching the library folders: new, changed, moved and deleted files are picked up without a key press.

`watch_folders` blocks in a worker thread on the operating system's file notifications
(inotify, FSEvents, ReadDirectoryChangesW, through watchfiles) and calls `on_change` with
the audio paths touched, a batch at a time: a copy of a whole album arrives as one batch
after `debounce_ms` of quiet. What to do with a batch is the caller's: the app re-scans (the
scan is incremental, so unchanged files cost a stat each) and analyses what is new, which
then shows up as *new* (cold) suggestions. Folders that disappear end the watch with a
`UserError`, never a traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mrs_tui.audio import AUDIO_EXTENSIONS
from mrs_tui.errors import UserError

DEBOUNCE_MS = 800


def is_audio_path(path: str | Path) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS


def watch_folders(
    folders: Sequence[Path],
    on_change: Callable[[set[Path]], None],
    stop: threading.Event,
    *,
    debounce_ms: int = DEBOUNCE_MS,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Call `on_change(paths)` for every batch of audio files added, changed, moved or deleted, until `stop`.

    `on_ready()` is called once the operating system's watch is in place: a file written after
    it is seen (watchfiles yields on its first timeout, after the watch was set up).
    """
    import watchfiles

    roots = [Path(f).expanduser().resolve() for f in folders]
    for root in roots:
        if not root.is_dir():
            raise UserError(f"cannot watch {root}: not a folder", "check the library folder still exists")

    def audio_only(_change: watchfiles.Change, path: str) -> bool:
        return is_audio_path(path)

    ready = on_ready
    try:
        for changes in watchfiles.watch(
            *roots,
            watch_filter=audio_only,
            debounce=debounce_ms,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=True,
        ):
            if ready is not None:
                ready()
                ready = None
            paths = {Path(path) for _change, path in changes}
            if paths:
                on_change(paths)
    except FileNotFoundError as exc:
        raise UserError(f"stopped watching: {exc}", "the library folder was removed; restart mrs-tui on it") from exc


def changed_since(folders: Sequence[Path], since: float, *, slack: float = 2.0) -> set[Path]:
    """Audio files under `folders` created, changed or moved in after `since` (a wall-clock time).

        The status-change time counts too: a file moved in keeps its modification time but not
        that. `slack` seconds allow for file systems with whole-second timestamps (FAT, some network
    mounts); a timestamp with a fraction is taken as it is.
    """
    import os

    found: set[Path] = set()
    for root in folders:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if not is_audio_path(name):
                    continue
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except OSError:  # gone again meanwhile
                    continue
                changed = max(stat.st_mtime, stat.st_ctime)
                if changed >= since - (slack if changed == int(changed) else 0.0):
                    found.add(path)
    return found
