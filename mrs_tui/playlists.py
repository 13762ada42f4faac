"""Playlists: save a list of tracks under a name, export and import M3U/M3U8.

Export writes extended M3U (``#EXTM3U``, one ``#EXTINF:seconds,Artist - Title`` per entry)
in UTF-8, with paths relative to the playlist file's folder (so a playlist written next to the
music keeps working when the disk is mounted elsewhere) or absolute. Import resolves relative
paths against the playlist file's folder, accepts ``file://`` URLs and Windows separators,
and when a path is not in the library falls back to the ``#EXTINF`` artist and title (the
same matching as the listening-history import). Entries that match nothing are reported with
FILE:LINE, never dropped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from mrs_tui.errors import UserError
from mrs_tui.imports.formats import Listen, decode_text
from mrs_tui.imports.matching import TrackMatcher
from mrs_tui.store import Store, Track


@dataclass(frozen=True)
class M3UEntry:
    line: int
    location: str
    seconds: float | None = None
    title: str | None = None  # "Artist - Title" from #EXTINF


@dataclass
class PlaylistImport:
    name: str
    track_ids: list[int] = field(default_factory=list)
    by_tags: int = 0  # found by #EXTINF artist/title because the path was not in the library
    missing: list[str] = field(default_factory=list)  # FILE:LINE: entry: why

    def text(self) -> str:
        lines = [f"playlist {self.name!r}: {len(self.track_ids)} tracks"]
        if self.by_tags:
            lines[0] += f" ({self.by_tags} found by artist and title)"
        if self.missing:
            lines.append(f"{len(self.missing)} entries not found:")
            lines += [f"  {m}" for m in self.missing]
        return "\n".join(lines)


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise UserError("a playlist needs a name", "e.g. mrs-tui playlist import evening.m3u --name evening")
    return name


def playlist_tracks(store: Store, name: str) -> list[Track]:
    info = store.playlist(name)
    if info is None:
        known = ", ".join(p.name for p in store.playlists()) or "none yet"
        raise UserError(f"no playlist named {name!r}", f"playlists: {known}")
    by_id = {t.id: t for t in store.tracks(ids=store.playlist_track_ids(info.id))}
    return [by_id[i] for i in store.playlist_track_ids(info.id) if i in by_id]


# -- export ----------------------------------------------------------------------------------------


def m3u_text(tracks: list[Track], dest: Path, *, absolute: bool = False) -> str:
    folder = dest.expanduser().resolve().parent
    lines = ["#EXTM3U"]
    for track in tracks:
        seconds = int(round(track.duration)) if track.duration else -1
        label = f"{track.artist} - {track.display_title}" if track.artist else track.display_title
        lines.append(f"#EXTINF:{seconds},{label}")
        lines.append(track.path if absolute else _relative(track.path, folder))
    return "\n".join(lines) + "\n"


def _relative(path: str, folder: Path) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive on Windows: only an absolute path can reach it
        return path


def export_playlist(store: Store, name: str, dest: Path, *, absolute: bool = False) -> int:
    """Write playlist `name` to `dest` (.m3u or .m3u8); returns the number of entries."""
    dest = Path(dest).expanduser()
    if dest.suffix.lower() not in (".m3u", ".m3u8"):
        raise UserError(f"{dest}: a playlist file ends in .m3u or .m3u8", "e.g. evening.m3u8")
    tracks = playlist_tracks(store, name)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(m3u_text(tracks, dest, absolute=absolute), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {dest}: {exc.strerror}", "choose a writable folder") from exc
    return len(tracks)


# -- import ----------------------------------------------------------------------------------------


def read_m3u(path: Path) -> list[M3UEntry]:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file", "give the path of an .m3u or .m3u8 file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})", "check the file's permissions") from exc
    text, _notes = decode_text(str(path), data)
    entries: list[M3UEntry] = []
    pending: tuple[float | None, str | None] = (None, None)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.upper().startswith("#EXTINF:"):
            head, _, title = line[8:].partition(",")
            try:
                seconds = float(head.split()[0]) if head.strip() else None
            except ValueError:
                seconds = None
            pending = (seconds if seconds and seconds > 0 else None, title.strip() or None)
            continue
        if line.startswith("#"):
            continue
        entries.append(M3UEntry(number, line, *pending))
        pending = (None, None)
    return entries


def _resolve(location: str, folder: Path) -> Path | None:
    if "://" in location:
        parsed = urlparse(location)
        if parsed.scheme != "file":
            return None  # a stream URL: not a library file
        return Path(unquote(parsed.path))
    if "\\" in location and "/" not in location:
        location = location.replace("\\", "/")
    candidate = Path(location).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def import_playlist(store: Store, path: Path, *, name: str | None = None) -> PlaylistImport:
    """Read an M3U file into the playlist `name` (default: the file's name), replacing one of that name."""
    path = Path(path).expanduser()
    entries = read_m3u(path)
    result = PlaylistImport(check_name(name or path.stem))
    folder = path.resolve().parent
    matcher: TrackMatcher | None = None
    for entry in entries:
        where = f"{path}:{entry.line}: {entry.location}"
        resolved = _resolve(entry.location, folder)
        track = None
        if resolved is not None:
            track = store.track_by_path(str(resolved.resolve())) or store.track_by_path(str(resolved))
        if track is None and entry.title and " - " in entry.title:
            if matcher is None:
                matcher = TrackMatcher(store.tracks(status="ok"))
            artist, _, title = entry.title.partition(" - ")
            match = matcher.match(Listen("m3u", where, 0.0, artist.strip(), title.strip(), duration_s=entry.seconds))
            if match.matched:
                track = matcher.tracks[match.track_id]
                result.by_tags += 1
        if track is None:
            why = "a stream, not a file" if resolved is None else "not in the library"
            if resolved is not None and not resolved.exists():
                why = "no such file"
            result.missing.append(f"{where}: {why}")
            continue
        result.track_ids.append(track.id)
    store.save_playlist(result.name, result.track_ids)
    return result
