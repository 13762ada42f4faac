"""Scanning a music folder into the store, incrementally.

A re-scan looks at size and mtime first and reads nothing of an unchanged file. A file whose
size or mtime changed is hashed again: same content (a `touch`) only updates the stat; new
content re-reads the tags and drops the file's stored embeddings so they are recomputed.
A new path whose content hash matches a track whose file has disappeared is that track,
moved: it keeps its id, embeddings and play history. Paths that vanished are marked
*missing* (never deleted: their history stays). Files that are not decodable audio are kept
with status *failed* and the reason, so the library shows them.

The content hash is BLAKE2b over the size and the first and last 256 KiB: reading whole
files would make the first scan of a large library I/O-bound for no gain in practice.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mrs_tui.audio import AUDIO_EXTENSIONS, probe
from mrs_tui.errors import AudioDecodeError, UserError
from mrs_tui.store import Store, Track

HASH_CHUNK = 256 * 1024
TAG_FIELDS = ("title", "artist", "album", "genre", "year")


@dataclass
class ScanReport:
    root: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # failed before, looked at again
    unchanged: int = 0
    cancelled: bool = False

    @property
    def total(self) -> int:
        return len(self.added) + len(self.changed) + len(self.moved) + self.unchanged

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} new",
            f"{len(self.changed)} changed",
            f"{len(self.moved)} moved",
            f"{len(self.missing)} missing",
            f"{len(self.failed)} unreadable",
            *([f"{len(self.retried)} retried"] if self.retried else []),
            f"{self.unchanged} unchanged",
        ]
        return ", ".join(parts) + (" (cancelled)" if self.cancelled else "")


def content_hash(path: Path, size: int | None = None) -> str:
    size = path.stat().st_size if size is None else size
    digest = hashlib.blake2b(digest_size=16)
    digest.update(size.to_bytes(8, "little"))
    with path.open("rb") as f:
        digest.update(f.read(HASH_CHUNK))
        if size > 2 * HASH_CHUNK:
            f.seek(-HASH_CHUNK, os.SEEK_END)
            digest.update(f.read(HASH_CHUNK))
    return digest.hexdigest()


def iter_entries(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each audio file under root, (path, why) for each entry that must be skipped.

    Hidden files and folders are left out; the order is stable.

    Nothing is opened here: a FIFO or a device with an audio extension would block a read
    forever, so anything that is not a regular file is skipped on its `lstat` alone, as are
    dangling links, link loops and what cannot be read. Links to folders are not followed.
    """
    unreadable: list[tuple[Path, str]] = []

    def on_error(exc: OSError) -> None:
        unreadable.append((Path(exc.filename), f"folder cannot be read: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        yield from unreadable
        unreadable.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                path = Path(folder) / name
                reason = _skip_reason(path)
                if reason != _VANISHED:
                    yield path, reason
    yield from unreadable


_VANISHED = "vanished"  # deleted between listing and looking: simply not there


def _skip_reason(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return _VANISHED
        return f"dangling symbolic link (it points to {target}, which does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        return f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"not a regular file: it is {kind}"
    if not os.access(path, os.R_OK):
        return "cannot read file: permission denied"
    return None


def read_tags(path: Path) -> tuple[dict[str, str | None], float | None]:
    """(tags, duration) from the file's metadata; empty when mutagen cannot parse it."""
    import mutagen

    tags: dict[str, str | None] = dict.fromkeys(TAG_FIELDS)
    try:
        easy = mutagen.File(path, easy=True)
    except Exception:
        easy = None
    duration = None
    if easy is not None:
        duration = getattr(getattr(easy, "info", None), "length", None) or None
        if easy.tags is not None:
            for key, name in (
                ("title", "title"),
                ("artist", "artist"),
                ("album", "album"),
                ("genre", "genre"),
                ("date", "year"),
            ):
                try:
                    values = easy.tags.get(key)
                except (KeyError, ValueError):
                    values = None
                if values:
                    tags[name] = str(values[0]).strip() or None
    if not any(tags.values()):
        tags.update(_raw_tags(path))
    return tags, duration


def _raw_tags(path: Path) -> dict[str, str | None]:
    """Formats whose 'easy' interface misses tags (ID3 inside WAV/AIFF)."""
    import mutagen

    try:
        raw = mutagen.File(path)
    except Exception:
        return {}
    if raw is None or raw.tags is None:
        return {}
    frames = {"title": "TIT2", "artist": "TPE1", "album": "TALB", "genre": "TCON", "year": "TDRC"}
    found: dict[str, str | None] = {}
    for name, frame in frames.items():
        value = raw.tags.get(frame) if hasattr(raw.tags, "get") else None
        if value is not None and getattr(value, "text", None):
            found[name] = str(value.text[0]).strip() or None
    return found


def describe_file(path: Path, size: int) -> dict:
    """Track columns for a file: tags, duration, and status/error if it is not readable audio."""
    tags, duration = read_tags(path)
    status, error = "ok", None
    if size == 0:
        status, error = "failed", "empty file (0 bytes)"
    else:
        try:
            info = probe(path)
            if duration is None or duration <= 0:
                duration = info.duration
            if info.sample_rate <= 0 or info.channels <= 0:
                status, error = "failed", "no decodable audio stream"
        except AudioDecodeError as exc:
            status, error = "failed", str(exc)
    return {**tags, "duration": duration, "status": status, "error": error}


ProgressFn = Callable[[int, int, str], None]


def scan(
    store: Store,
    root: Path | str,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    retry_failed: bool = False,
) -> ScanReport:
    """Bring the store up to date with the files under `root`.

    A failed file is looked at again when its size or mtime changed, when it failed because it
    was absent or unreadable at the time (it is here now), or for every failed file with
    `retry_failed`.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"folder {root} does not exist", "check the path and try again")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder", "give the folder that holds your music")
    root = root.resolve()
    report = ScanReport(str(root))
    known = {t.path: t for t in store.tracks(under=str(root))}
    files = list(iter_entries(root))
    seen: set[str] = set()
    for done, (path, problem) in enumerate(files, 1):
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            return report
        key = str(path)
        seen.add(key)
        try:
            if problem is None:
                _scan_one(store, path, known.get(key), report, retry_failed)
            else:
                _record_skipped(store, key, problem, known.get(key), report)
        except OSError as exc:  # vanished or unreadable between walk and read
            _record_skipped(store, key, f"cannot read file: {exc.strerror or exc}", known.get(key), report)
        if progress is not None:
            progress(done, len(files), key)
    moved_away = {old for old, _new in report.moved}
    for path, track in known.items():
        if path in seen or path in moved_away or track.status == "missing" or Path(path).exists():
            continue
        store.update_track(track.id, status="missing")
        report.missing.append(path)
    return report


# Failures that say nothing about the content: the file was away or unreadable at the time.
ABSENCE_ERRORS = ("file not found", "cannot read file")


def _retry(track: Track, stat_changed: bool, retry_failed: bool) -> bool:
    if track.status != "failed":
        return False
    return retry_failed or stat_changed or (track.error or "").startswith(ABSENCE_ERRORS)


def _scan_one(store: Store, path: Path, track: Track | None, report: ScanReport, retry_failed: bool = False) -> None:
    stat = path.stat()
    key = str(path)
    if track is not None and track.status != "missing":
        stat_changed = track.size != stat.st_size or track.mtime != stat.st_mtime
        retry = _retry(track, stat_changed, retry_failed)
        if not stat_changed and not retry:
            report.unchanged += 1
            return
        digest = content_hash(path, stat.st_size)
        if digest == track.content_hash and retry:
            fields = describe_file(path, stat.st_size)
            store.update_track(track.id, size=stat.st_size, mtime=stat.st_mtime, **fields)
            report.retried.append(key)
            _note_failure(report, key, fields)
            return
        if digest == track.content_hash:
            store.update_track(track.id, size=stat.st_size, mtime=stat.st_mtime)
            report.unchanged += 1
            return
        fields = describe_file(path, stat.st_size)
        with store.write():
            store.delete_embeddings(track.id)
            store.update_track(track.id, size=stat.st_size, mtime=stat.st_mtime, content_hash=digest, **fields)
        report.changed.append(key)
        _note_failure(report, key, fields)
        return
    digest = content_hash(path, stat.st_size)
    if track is not None:  # the same path came back after being missing
        fields = describe_file(path, stat.st_size) if digest != track.content_hash else {"status": "ok"}
        if digest != track.content_hash:
            store.delete_embeddings(track.id)
        store.update_track(track.id, size=stat.st_size, mtime=stat.st_mtime, content_hash=digest, **fields)
        report.changed.append(key)
        return
    for candidate in store.tracks_by_hash(digest):
        if candidate.path != key and not Path(candidate.path).exists():
            fields: dict = {"status": "ok"} if candidate.status == "missing" else {}
            if candidate.status == "failed":  # it may have failed only because it was being moved
                fields = describe_file(path, stat.st_size)
            store.update_track(candidate.id, path=key, size=stat.st_size, mtime=stat.st_mtime, **fields)
            report.moved.append((candidate.path, key))
            _note_failure(report, key, fields)
            return
    fields = describe_file(path, stat.st_size)
    store.add_track(key, size=stat.st_size, mtime=stat.st_mtime, content_hash=digest, **fields)
    report.added.append(key)
    _note_failure(report, key, fields)


def _record_skipped(store: Store, key: str, reason: str, track: Track | None, report: ScanReport) -> None:
    """Keep a skipped entry as a failed track, so `library --status failed` lists it with the reason."""
    report.failed.append((key, reason))
    if track is None:
        store.add_track(key, status="failed", error=reason)
    elif track.status != "failed" or track.error != reason:
        store.update_track(track.id, status="failed", error=reason, size=None, mtime=None)


def _note_failure(report: ScanReport, path: str, fields: dict) -> None:
    if fields.get("status") == "failed":
        report.failed.append((path, fields.get("error") or "unreadable"))
