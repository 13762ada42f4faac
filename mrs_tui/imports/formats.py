"""Reading listening exports: ListenBrainz, Last.fm CSV and Spotify, into one `Listen` record.

The format is recognised from the content, not the file name, so a renamed file still works.
Every row that cannot be used is reported as ``FILE:LINE: what is wrong`` and never guessed
(a scrobble with a zero timestamp is reported, not dated "now"). Files may carry a byte-order
mark (UTF-8 or UTF-16, as Excel writes them) or be in Windows-1252; the second is read anyway
and said so in a note, because a wrongly decoded accent would otherwise fail to match silently.

Formats, as their owners document them:

- ListenBrainz export: a JSON array (older exports) or JSON lines (the zip export,
  ``listens/YYYY/M.jsonl``) of listens with ``listened_at`` (Unix seconds) and
  ``track_metadata`` holding ``artist_name``, ``track_name``, ``release_name``,
  ``additional_info`` (``recording_mbid``, ``duration_ms``) and ``mbid_mapping``
  (``recording_mbid`` once ListenBrainz has matched the listen to MusicBrainz).
- Last.fm scrobbles as CSV: without a header, ``artist,album,track,date`` (the layout of the
  widely used lastfm-to-csv exporter, dates like ``31 Jan 2021 18:05``); with a header, the
  columns are found by name (``uts``/``utc_time``/``date``, ``artist``, ``album``,
  ``track``/``title``, ``track_mbid``/``mbid``), any delimiter of ``,;`` or tab.
- Spotify account data ``StreamingHistory*.json``: ``endTime`` (UTC, minutes), ``artistName``,
  ``trackName``, ``msPlayed``. Extended streaming history ``Streaming_History_Audio_*.json``
  (formerly ``endsong_*.json``): ``ts`` (UTC end time), ``ms_played``,
  ``master_metadata_track_name``, ``master_metadata_album_artist_name``,
  ``master_metadata_album_album_name``, ``spotify_track_uri``, ``reason_end``, ``skipped``;
  podcast and audiobook rows have no track name and are counted, not imported.
"""

from __future__ import annotations

import bisect
import calendar
import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mrs_tui.errors import UserError

SOURCES = ("listenbrainz", "lastfm", "spotify")
# Spotify counts a stream from 30 s on; anything shorter was skipped.
SHORT_PLAY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Listen:
    source: str
    where: str  # FILE:LINE, for messages
    at: float  # when the listen started, Unix seconds (UTC)
    artist: str
    title: str
    album: str | None = None
    mbid: str | None = None  # MusicBrainz recording id
    duration_s: float | None = None  # length of the track, where the export gives it
    played_s: float | None = None  # how long it was heard, where the export gives it
    skipped: bool = False  # the export flags it as skipped, or it was a short play


@dataclass
class ParsedFile:
    name: str
    format: str = ""
    listens: list[Listen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # FILE:LINE: message
    notes: list[str] = field(default_factory=list)
    not_music: int = 0  # podcast episodes, audiobooks


# -- reading files ------------------------------------------------------------------------------


def read_export(path: Path) -> list[ParsedFile]:
    """Every export in `path` (a zip archive may hold several)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file", "give the path of an exported file")
    if path.is_dir():
        raise UserError(f"{path} is a folder", "give the export files themselves (e.g. folder/*.json)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})", "check the file's permissions") from exc
    if data[:4] == b"PK\x03\x04":
        return _read_zip(path, data)
    return [parse_export(str(path), data)]


def _read_zip(path: Path, data: bytes) -> list[ParsedFile]:
    parsed = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                name = info.filename
                base = name.rsplit("/", 1)[-1]
                if info.is_dir() or base.startswith(".") or not base.lower().endswith((".json", ".jsonl", ".csv")):
                    continue
                if not _looks_like_listens(name):
                    continue
                parsed.append(parse_export(f"{path}/{name}", archive.read(info)))
    except zipfile.BadZipFile as exc:
        raise UserError(f"{path}: damaged zip archive ({exc})", "download the export again") from exc
    if not parsed:
        raise UserError(f"{path}: the archive holds no listening history", "unpack it and give the history files")
    return parsed


def _looks_like_listens(member: str) -> bool:
    """Zip members that hold listens (a Spotify archive also has playlists, a ListenBrainz one feedback)."""
    lower = member.lower()
    base = lower.rsplit("/", 1)[-1]
    return (
        lower.startswith("listens/")
        or "/listens/" in lower
        or base.startswith(("streaminghistory", "streaming_history_audio", "endsong"))
        or base.endswith(".csv")
    )


def decode_text(name: str, data: bytes) -> tuple[str, list[str]]:
    """Text of a file, honouring a byte-order mark; Windows-1252 when it is not UTF-8 (with a note)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), []
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            raise UserError(f"{name}: damaged UTF-16 text ({exc.reason})", "export the file again") from exc
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        note = f"{name}:{line}: not UTF-8; read as Windows-1252 (save the file as UTF-8 if names look wrong)"
        return data.decode("cp1252", errors="replace"), [note]


def parse_export(name: str, data: bytes) -> ParsedFile:
    text, notes = decode_text(name, data)
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{name}: the file is empty", "give a non-empty export")
    if stripped[0] == "[":
        parsed = _parse_json_array(name, text)
    elif stripped[0] == "{":
        parsed = _parse_json_lines(name, text)
    else:
        parsed = _parse_lastfm_csv(name, text)
    parsed.notes[:0] = notes
    return parsed


# -- JSON ------------------------------------------------------------------------------------------

_WS = re.compile(r"\s*")


class _Lines:
    """Offset -> line number in one text."""

    def __init__(self, text: str) -> None:
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1


def iter_json_array(name: str, text: str) -> Iterator[tuple[int, object]]:
    """(line, element) for each element of the top-level JSON array, so messages can name lines."""
    decoder = json.JSONDecoder()
    lines = _Lines(text)
    i = _WS.match(text, 0).end() + 1  # past "["
    first = True
    while True:
        i = _WS.match(text, i).end()
        if i < len(text) and text[i] == "]":
            return
        if not first:
            if i >= len(text) or text[i] != ",":
                raise UserError(f"{name}:{lines.line(i)}: not valid JSON (expected ',' or ']')", _JSON_FIX)
            i = _WS.match(text, i + 1).end()
        first = False
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise UserError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg})", _JSON_FIX) from exc
        yield lines.line(i), value
        i = end


_JSON_FIX = "the file looks damaged or cut short: download the export again"


def _parse_json_array(name: str, text: str) -> ParsedFile:
    parsed = ParsedFile(name)
    parse_row = None
    for line, row in iter_json_array(name, text):
        where = f"{name}:{line}"
        if not isinstance(row, dict):
            parsed.problems.append(f"{where}: not a listen (expected a JSON object)")
            continue
        if parse_row is None:
            parsed.format, parse_row = _json_format(name, row)
        parse_row(parsed, where, row)
    if parse_row is None:
        parsed.format = "empty"
    return parsed


def _parse_json_lines(name: str, text: str) -> ParsedFile:
    parsed = ParsedFile(name)
    parse_row = None
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{name}:{number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            if number == 1:
                raise UserError(f"{where}: not valid JSON lines ({exc.msg})", _JSON_FIX) from exc
            parsed.problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            parsed.problems.append(f"{where}: not a listen (expected a JSON object)")
            continue
        if parse_row is None:
            parsed.format, parse_row = _json_format(name, row)
        parse_row(parsed, where, row)
    return parsed


def _json_format(name: str, row: dict):
    if "track_metadata" in row:
        return "listenbrainz", _listenbrainz_row
    if "master_metadata_track_name" in row or ("ts" in row and "ms_played" in row):
        return "spotify-extended", _spotify_extended_row
    if "endTime" in row and "msPlayed" in row:
        return "spotify", _spotify_account_row
    keys = ", ".join(sorted(row)[:6])
    raise UserError(
        f"{name}: not a ListenBrainz, Last.fm or Spotify export (first record has: {keys})",
        "give a ListenBrainz listens export, a Last.fm scrobble CSV or Spotify StreamingHistory files",
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _listenbrainz_row(parsed: ParsedFile, where: str, row: dict) -> None:
    meta = row.get("track_metadata") or {}
    info = meta.get("additional_info") or {}
    mapping = meta.get("mbid_mapping") or {}
    artist, title = _text(meta.get("artist_name")), _text(meta.get("track_name"))
    at = _timestamp(row.get("listened_at"))
    if not _usable(parsed, where, at, artist, title, "listened_at"):
        return
    duration = None
    if isinstance(info.get("duration_ms"), (int, float)) and info["duration_ms"] > 0:
        duration = info["duration_ms"] / 1000.0
    elif isinstance(info.get("duration"), (int, float)) and info["duration"] > 0:
        duration = float(info["duration"])
    mbid = _text(mapping.get("recording_mbid")) or _text(info.get("recording_mbid")) or None
    album = _text(meta.get("release_name")) or None
    parsed.listens.append(Listen("listenbrainz", where, at, artist, title, album, mbid, duration))


def _played_seconds(parsed: ParsedFile, where: str, row: dict, key: str) -> float | None:
    """Seconds heard from Spotify's milliseconds field `key`, or None (reported) when unusable."""
    played = row.get(key)
    if not isinstance(played, (int, float)) or played < 0:
        parsed.problems.append(f"{where}: {key} is missing or not a number")
        return None
    return played / 1000.0


def _spotify_account_row(parsed: ParsedFile, where: str, row: dict) -> None:
    artist, title = _text(row.get("artistName")), _text(row.get("trackName"))
    end = _timestamp(row.get("endTime"))
    seconds = _played_seconds(parsed, where, row, "msPlayed")
    if seconds is None or not _usable(parsed, where, end, artist, title, "endTime"):
        return
    parsed.listens.append(
        Listen("spotify", where, end - seconds, artist, title, played_s=seconds, skipped=seconds < SHORT_PLAY_SECONDS)
    )


def _spotify_extended_row(parsed: ParsedFile, where: str, row: dict) -> None:
    title = _text(row.get("master_metadata_track_name"))
    if not title and (row.get("episode_name") or row.get("spotify_episode_uri") or row.get("audiobook_title")):
        parsed.not_music += 1
        return
    artist = _text(row.get("master_metadata_album_artist_name"))
    end = _timestamp(row.get("ts"))
    seconds = _played_seconds(parsed, where, row, "ms_played")
    if seconds is None or not _usable(parsed, where, end, artist, title, "ts"):
        return
    skipped = bool(row.get("skipped")) or seconds < SHORT_PLAY_SECONDS
    album = _text(row.get("master_metadata_album_album_name")) or None
    parsed.listens.append(
        Listen("spotify", where, end - seconds, artist, title, album, played_s=seconds, skipped=skipped)
    )


def _usable(parsed: ParsedFile, where: str, at: float | None, artist: str, title: str, time_field: str) -> bool:
    if not artist or not title:
        missing = "artist and title" if not artist and not title else ("artist" if not artist else "title")
        parsed.problems.append(f"{where}: no {missing}")
        return False
    if at is None:
        parsed.problems.append(f"{where}: {time_field} is missing or not a date")
        return False
    if at <= 0:
        parsed.problems.append(f"{where}: {time_field} is zero (the date was not recorded)")
        return False
    return True


# -- timestamps ------------------------------------------------------------------------------------

_LASTFM_DATE = re.compile(r"(\d{1,2}) ([A-Za-z]{3}) (\d{4}),? (\d{1,2}):(\d{2})(?::(\d{2}))?")
_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}
_DATE_FORMATS = ("%d %b %Y %H:%M", "%d %b %Y, %H:%M", "%d %b %Y %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M")


def _timestamp(value: object) -> float | None:
    """Unix seconds from the forms exports use; naive dates are UTC (as all three services write them)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 100_000_000_000 else float(value)  # milliseconds
    text = str(value).strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _timestamp(float(text))
    fast = _LASTFM_DATE.fullmatch(text)  # strptime costs 0.1 ms a row: too slow for 100k scrobbles
    if fast and fast[2].lower() in _MONTHS:
        day, month, year, hour, minute, second = fast.groups()
        parts = (int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second or 0))
        return float(calendar.timegm(parts))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
        for fmt in _DATE_FORMATS:
            try:
                moment = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if moment is None:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# -- Last.fm CSV -----------------------------------------------------------------------------------

_COLUMNS = {
    "artist": ("artist", "artistname", "artist_name"),
    "album": ("album", "albumname", "album_name", "release"),
    "title": ("track", "title", "trackname", "track_name", "name", "song"),
    "mbid": ("track_mbid", "trackmbid", "recording_mbid", "mbid", "track id", "trackid"),
    # in order of preference: Unix seconds first, then full dates, then a bare date column
    "time": ("uts", "date_uts", "timestamp", "utc_time", "datetime", "played_at", "scrobbled_at", "date", "time"),
}


def _parse_lastfm_csv(name: str, text: str) -> ParsedFile:
    parsed = ParsedFile(name, "lastfm")
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        first = next(reader)
    except StopIteration:
        return parsed
    except csv.Error as exc:
        raise UserError(f"{name}:1: not a CSV file ({exc})", "give a Last.fm scrobble CSV") from exc
    header = [cell.strip().lower() for cell in first]
    columns = _header_columns(header)
    if columns is None:
        if len(first) < 4 or (_timestamp(first[3]) is None and first[3].strip() not in ("", "0")):
            raise UserError(
                f"{name}:1: not a Last.fm scrobble CSV (no header naming artist/track/date, "
                "and not the artist,album,track,date layout)",
                "give a Last.fm export CSV, a ListenBrainz export or Spotify StreamingHistory files",
            )
        columns = {"artist": 0, "album": 1, "title": 2, "time": 3}
        rows = _chain([(1, first)], reader)
    else:
        rows = ((reader.line_num, row) for row in reader)
    time_extra = columns.pop("time_of_day", None)
    try:
        for line, row in rows:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{name}:{line}"

            def cell(key: str, row: list[str] = row) -> str:
                index = columns.get(key)
                return row[index].strip() if index is not None and index < len(row) else ""

            raw_time = cell("time")
            if time_extra is not None and time_extra < len(row):
                raw_time = f"{raw_time} {row[time_extra].strip()}"
            at = _timestamp(raw_time) if raw_time not in ("", "0") else (0.0 if raw_time == "0" else None)
            artist, title = cell("artist"), cell("title")
            if not _usable(parsed, where, at, artist, title, "date"):
                continue
            parsed.listens.append(
                Listen("lastfm", where, at, artist, title, cell("album") or None, cell("mbid") or None)
            )
    except csv.Error as exc:
        raise UserError(f"{name}:{reader.line_num}: damaged CSV ({exc})", "export the file again") from exc
    return parsed


def _chain(head: list[tuple[int, list[str]]], reader) -> Iterator[tuple[int, list[str]]]:
    yield from head
    for row in reader:
        yield reader.line_num, row


def _header_columns(header: list[str]) -> dict[str, int] | None:
    """Column index per field when the first row is a header naming at least artist, track and a date."""
    found: dict[str, int] = {}
    for key, names in _COLUMNS.items():
        for candidate in names:
            if candidate in header:
                found[key] = header.index(candidate)
                break
    if not {"artist", "title", "time"} <= found.keys():
        return None
    # separate "date" and "time" columns (some exporters split them): read both
    if header[found["time"]] == "date" and "time" in header:
        found["time_of_day"] = header.index("time")
    return found
