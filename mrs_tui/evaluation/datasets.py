"""What an evaluation runs on: a play log and, per backend, one vector per item.

Four sources, one shape (`Dataset`: a `PlayLog` of positive interactions plus named
`VectorSource`s keyed by the same item keys):

- **the local history** (`history_dataset`): positive (session, track) pairs from the store,
  the same pairs the app trains on; vectors are the library's stored embeddings;
- **a research log** (`log_dataset` with ``embeddings``): a Music4All(-Onion)-style
  ``user_id, track_id, timestamp[, count]`` file (TSV, CSV or parquet) and one or more
  ``.npy`` matrices whose rows follow a track-id list (one id per line). Without a list, row
  *i* is track id *i*, which is how the paper's code indexes its matrices. No audio needed;
- **an external log against the library** (`log_dataset` with a ``store``): the same file,
  whose track column holds library track ids or file paths (absolute, relative to
  ``library_root``, or — without a root — matched on their trailing path components);
- **pre-made splits** (`split_dir_dataset`): the paper's published ``train``, ``val``,
  ``hot_test`` and ``cold_test`` files, so numbers can be compared on exactly its split.

Item keys are strings everywhere (a log's integer ids and a track-id list's lines must
match). User keys keep the type the file gives them — the paper sorts users by their native
value before drawing validation users, and so do we.

Timestamps become float seconds since the epoch, UTC. Datetime columns without a zone are
read as UTC; integer columns are epoch seconds, or milliseconds when they are too large to
be seconds (after the year 5000).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrs_tui.errors import UserError

USER_COLUMNS = ("user_id", "userid", "user", "uid")
TRACK_COLUMNS = ("track_id", "trackid", "track", "item_id", "itemid", "item", "path", "file")
TIME_COLUMNS = ("timestamp", "time", "ts", "played_at", "date", "datetime")
COUNT_COLUMNS = ("count", "plays", "playcount", "play_count", "n")
SESSION_COLUMNS = ("session_id", "session")
PARQUET_SUFFIXES = (".parquet", ".pqt", ".pq")
TEXT_SUFFIXES = (".tsv", ".tab", ".csv", ".txt")
SPLIT_PARTS = ("train", "val", "hot_test", "cold_test")
_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138; larger values are milliseconds
_EARLIEST, _LATEST = -2208988800.0, 7258118400.0  # 1900-01-01 and 2200-01-01 UTC: plausible play times


@dataclass
class PlayLog:
    """Positive interactions, one row per play or per (context, item) pair with a count."""

    users: np.ndarray  # native user keys (int64 or str objects)
    items: np.ndarray  # item keys, str objects
    timestamps: np.ndarray  # float64, seconds since the epoch (UTC)
    counts: np.ndarray  # float32
    sessions: np.ndarray | None = None  # session keys when the source knows its sessions
    # Skips and dislikes (one row per turned-down (context, track) pair; counts unused), when the source has them.
    negatives: PlayLog | None = None

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.counts = np.asarray(self.counts, dtype=np.float32)
        n = len(self.items)
        if not (len(self.users) == len(self.timestamps) == len(self.counts) == n):
            raise ValueError("users, items, timestamps and counts must have the same length")
        if self.sessions is not None and len(self.sessions) != n:
            raise ValueError("sessions must have one key per row")

    def __len__(self) -> int:
        return len(self.items)

    def take(self, mask: np.ndarray) -> PlayLog:
        """The rows of `mask` (the negatives stay as they are)."""
        return PlayLog(
            self.users[mask],
            self.items[mask],
            self.timestamps[mask],
            self.counts[mask],
            None if self.sessions is None else self.sessions[mask],
            negatives=self.negatives,
        )

    @property
    def n_users(self) -> int:
        return len(np.unique(self.users)) if len(self) else 0


class VectorSource:
    """One backend's vectors, looked up by item key."""

    def __init__(self, name: str, keys: np.ndarray, loader: Callable[[], np.ndarray], description: str = "") -> None:
        self.name = name
        self.keys = np.asarray(keys, dtype=object)
        self._loader = loader
        self._matrix: np.ndarray | None = None
        self._row_of: dict[str, int] | None = None
        self.description = description

    @property
    def matrix(self) -> np.ndarray:
        if self._matrix is None:
            self._matrix = self._loader()
        return self._matrix

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        """float32 vectors of `keys`, in that order (every key must be present)."""
        if self._row_of is None:
            self._row_of = {k: i for i, k in enumerate(self.keys)}
        index = np.fromiter((self._row_of[k] for k in keys), np.int64)
        return np.ascontiguousarray(self.matrix[index], dtype=np.float32)


@dataclass
class Dataset:
    """A play log (or pre-made split parts) and the vectors every backend gives its items."""

    name: str
    kind: str  # "history", "log", "library-log", "split-dir"
    log: PlayLog | None
    sources: dict[str, VectorSource]
    default_contexts: str  # "sessions" or "users"
    parts: dict[str, PlayLog] | None = None  # pre-made split: train, val, hot_test, cold_test
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        rows = len(self.log) if self.log is not None else sum(len(p) for p in (self.parts or {}).values())
        return {"name": self.name, "kind": self.kind, "rows": rows, "backends": list(self.sources), "notes": self.notes}


# -- the local history -----------------------------------------------------------------------


def history_dataset(store, backends: Sequence[str], version_of: Callable[[str], str]) -> Dataset:
    """The store's play history as (session, track) pairs, with the library's stored vectors."""
    from mrs_tui.history import NEGATIVE_EVENTS, negative_tracks, positive_sequence

    by_session: dict[int, list] = {}
    for play in store.plays():
        by_session.setdefault(play.session_id, []).append(play)
    sessions, items, stamps, counts = [], [], [], []
    skipped_sessions, skipped_items, skipped_stamps = [], [], []
    for session_id, plays in by_session.items():
        turned_down = set(negative_tracks(plays))
        for p in plays:
            if p.event in NEGATIVE_EVENTS and p.track_id in turned_down:
                turned_down.discard(p.track_id)  # one row per pair, at its first skip
                skipped_sessions.append(session_id)
                skipped_items.append(str(p.track_id))
                skipped_stamps.append(p.at)
        first_at: dict[int, float] = {}
        played: dict[int, int] = {}
        for p in plays:
            first_at.setdefault(p.track_id, p.at)
            if p.event not in NEGATIVE_EVENTS:
                played[p.track_id] = played.get(p.track_id, 0) + 1
        for track_id in positive_sequence(plays):
            sessions.append(session_id)
            items.append(str(track_id))
            stamps.append(first_at[track_id])
            counts.append(played.get(track_id, 1))
    log = PlayLog(
        np.zeros(len(items), np.int64),  # one listener
        np.asarray(items, dtype=object),
        np.asarray(stamps, np.float64),
        np.asarray(counts, np.float32),
        sessions=np.asarray(sessions, np.int64),
        negatives=PlayLog(
            np.zeros(len(skipped_items), np.int64),
            np.asarray(skipped_items, dtype=object),
            np.asarray(skipped_stamps, np.float64),
            np.ones(len(skipped_items), np.float32),
            sessions=np.asarray(skipped_sessions, np.int64),
        ),
    )
    sources = {name: store_vectors(store, name, version_of(name)) for name in backends}
    return Dataset("local history", "history", log, sources, default_contexts="sessions")


def store_vectors(store, backend: str, version: str) -> VectorSource:
    ids, matrix, _ = store.embedding_matrix(backend, version)
    if len(ids) == 0:
        raise UserError(
            f"no track is analysed with {backend} ({version}) yet",
            f"index the library with it first: mrs-tui index FOLDER --backend {backend}",
        )
    keys = np.asarray([str(int(t)) for t in ids], dtype=object)
    return VectorSource(backend, keys, lambda: matrix, f"library vectors {backend}@{version}")


def indexed_backends(store, version_of: Callable[[str], str]) -> list[str]:
    """Backends with at least one stored vector for their current version."""
    import backends as backend_registry

    counts = store.embedding_counts()
    return [name for name in backend_registry.REGISTRY if counts.get((name, version_of(name)), (0, 0))[0] > 0]


# -- log files --------------------------------------------------------------------------------


def _pick(names: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def read_table(path: Path):
    """A pyarrow Table from parquet, TSV or CSV (delimiter from the suffix, else sniffed)."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist", "give the path of a TSV, CSV or parquet play log")
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pacsv

        if suffix in (".tsv", ".tab"):
            delimiter = "\t"
        elif suffix == ".csv":
            delimiter = ","
        else:
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
            delimiter = "\t" if "\t" in first else ("," if "," in first else ";" if ";" in first else " ")
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}", "give a TSV, CSV or parquet file") from exc


def _where(path: Path, row: int) -> str:
    """``FILE:LINE`` of data row `row` (0-based) of a text table, ``FILE (row N)`` of a parquet one."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return f"{path} (row {row + 1})"
    seen = -1
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                if seen == row:
                    return f"{path}:{number}"
                seen += 1
    return f"{path}:{row + 2}"


def _bad_row(path: Path, row: int, what: str, fix: str) -> UserError:
    return UserError(f"{_where(path, row)}: {what}", f"{fix}; nothing was stored")


def _timestamps(column, path: Path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    time_fix = "use epoch seconds or milliseconds, or ISO dates (YYYY-MM-DD HH:MM:SS)"
    if pa.types.is_timestamp(kind):
        seconds = pc.cast(pc.cast(column, pa.timestamp("us", tz=kind.tz)), pa.int64())
        values = np.asarray(seconds.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6
    elif pa.types.is_date(kind):
        values = np.asarray(pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64()).to_numpy(), np.float64)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        finite = values[np.isfinite(values)]
        # One unit for the whole column, chosen by its typical value: a single wild row must not
        # turn every other timestamp into milliseconds.
        if len(finite) and np.median(finite) > _MS_THRESHOLD:
            values = values / 1000.0
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # pyarrow's CSV reader already parsed ISO 8601; what is left gets Python's reading, or a clear error.
        from mrs_tui.evaluation.splits import parse_datetime

        values = np.empty(len(column), np.float64)
        for row, text in enumerate(column.to_pylist()):
            try:
                values[row] = parse_datetime(str(text)) if text is not None else np.nan
            except UserError:
                raise _bad_row(path, row, f"cannot read the time {text!r}", time_fix) from None
    else:
        raise UserError(f"{path}: cannot read timestamps of type {kind}", time_fix)
    wrong = ~np.isfinite(values) | (values < _EARLIEST) | (values > _LATEST)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raw = column[row].as_py()
        shown = f"{raw:g}" if isinstance(raw, float) else raw
        what = (
            "no timestamp"
            if raw is None or not np.isfinite(values[row])
            else f"the timestamp {shown} is not a date between 1900 and 2200"
        )
        raise _bad_row(path, row, what, time_fix)
    return values


def _counts(column, path: Path) -> np.ndarray:
    import pyarrow as pa

    fix = "the count column holds how many times the track was played: a number of 0 or more"
    values = column.to_pylist()
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        for row, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                raise _bad_row(path, row, f"the count {value!r} is not a number", fix) from None
    counts = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    wrong = ~np.isfinite(counts) | (counts < 0)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise _bad_row(path, row, f"the count {values[row]!r} is not a number of 0 or more", fix)
    return counts.astype(np.float32)


def _required_keys(column, path: Path, what: str) -> np.ndarray:
    nulls = np.flatnonzero(np.asarray(column.is_null()))
    if len(nulls):
        raise _bad_row(path, int(nulls[0]), f"no {what}", f"every row needs a {what}")
    keys = _keys(column)
    if keys.dtype == object:
        empty = next((i for i, k in enumerate(keys) if not k.strip()), None)
        if empty is not None:
            raise _bad_row(path, empty, f"no {what}", f"every row needs a {what}")
    return keys


def _keys(column) -> np.ndarray:
    """Native keys: int64 for integer columns, str objects otherwise."""
    import pyarrow as pa

    if pa.types.is_integer(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = column.to_pylist()
    return np.asarray(["" if v is None else str(v) for v in values], dtype=object)


def read_play_log(path: Path | str, *, require_time: bool = True) -> PlayLog:
    """Read a ``user_id, track_id, timestamp[, count]`` file (column names are matched loosely)."""
    path = Path(path)
    table = read_table(path)
    names = table.column_names
    user_col = _pick(names, USER_COLUMNS)
    track_col = _pick(names, TRACK_COLUMNS)
    time_col = _pick(names, TIME_COLUMNS)
    count_col = _pick(names, COUNT_COLUMNS)
    session_col = _pick(names, SESSION_COLUMNS)
    missing = [
        what
        for what, col in (("user", user_col), ("track", track_col), ("timestamp", time_col))
        if col is None and (what != "timestamp" or require_time)
    ]
    if missing:
        raise UserError(
            f"{path}: no {' or '.join(missing)} column (found: {', '.join(names) or 'none'})",
            "the file needs a header with user_id, track_id and timestamp columns",
        )
    n = table.num_rows
    users = _required_keys(table.column(user_col).combine_chunks(), path, "user id")
    items = _required_keys(table.column(track_col).combine_chunks(), path, "track id").astype(str).astype(object)
    stamps = _timestamps(table.column(time_col).combine_chunks(), path) if time_col else np.zeros(n)
    if count_col is not None:
        counts = _counts(table.column(count_col).combine_chunks(), path)
    else:
        counts = np.ones(n, np.float32)
    sessions = _keys(table.column(session_col).combine_chunks()) if session_col else None
    return PlayLog(users, items, stamps, counts, sessions)


def read_track_ids(path: Path | str) -> np.ndarray:
    """One track id per line (a header line naming the column is skipped), or a .npy array."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist", "give the file listing the track id of each embedding row")
    fix = "give a text file with one track id per line (or a .npy array of ids saved without pickling)"
    if path.suffix.lower() == ".npy":
        try:
            ids = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UserError(f"{path}: cannot read it as a numpy array of ids ({exc})", fix) from exc
        if ids.ndim != 1:
            raise UserError(f"{path} holds an array of shape {ids.shape}", fix)
        return np.asarray([str(x) for x in ids.tolist()], dtype=object)
    data = path.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}:{number}: this is not text (a binary or pickled file?)", fix) from None
        if b"\0" in raw:
            raise UserError(f"{path}:{number}: this is not text (a binary or pickled file?)", fix)
    lines = [line.strip() for line in data.decode("utf-8").splitlines()]
    lines = [line.split("\t")[0].split(",")[0] for line in lines if line]
    if lines and lines[0].lower() in (*TRACK_COLUMNS, "id"):
        lines = lines[1:]
    return np.asarray(lines, dtype=object)


def npy_vectors(path: Path | str, track_ids: np.ndarray | None, name: str | None = None) -> VectorSource:
    """A matrix file whose rows follow `track_ids` (or whose row i is track id i)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist", "give a .npy file with one embedding row per track")
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise UserError(
            f"cannot read {path}: {exc}", "save the embeddings with numpy.save (no pickled objects)"
        ) from exc
    if matrix.ndim != 2:
        raise UserError(f"{path} holds an array of shape {matrix.shape}", "expected a 2-D matrix: one row per track")
    if not np.issubdtype(matrix.dtype, np.number):
        raise UserError(f"{path} holds {matrix.dtype} values", "expected a numeric matrix: one row per track")
    _refuse_non_finite(path, matrix)
    if track_ids is None:
        keys = np.asarray([str(i) for i in range(matrix.shape[0])], dtype=object)
    else:
        if len(track_ids) != matrix.shape[0]:
            raise UserError(
                f"{path} has {matrix.shape[0]} rows but the track-id list has {len(track_ids)} ids",
                "give the id list that belongs to this matrix, one id per row",
            )
        keys = track_ids
    label = name or path.stem
    return VectorSource(label, keys, lambda: np.asarray(matrix, dtype=np.float32), f"{path.name} ({matrix.shape[1]}-d)")


def _refuse_non_finite(path: Path, matrix: np.ndarray, chunk: int = 65536) -> None:
    """A NaN or infinite value in one row would silently skew every distance to it."""
    for start in range(0, matrix.shape[0], chunk):
        block = np.asarray(matrix[start : start + chunk])
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{path}: row {row} (counting from 0) holds NaN or infinite values",
                "recompute that embedding, or drop the row and its id; nothing was stored",
            )


def _unique_name(name: str, taken: dict) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}-{n}", n + 1
    return out


def log_dataset(
    log_path: Path | str,
    *,
    embeddings: Sequence[Path | str] = (),
    track_ids: Path | str | None = None,
    store=None,
    backends: Sequence[str] = (),
    version_of: Callable[[str], str] | None = None,
    library_root: Path | str | None = None,
) -> Dataset:
    """A play log evaluated against `.npy` embeddings, or against the library (`store`)."""
    log = read_play_log(log_path)
    name = f"log {Path(log_path).name}"
    if embeddings:
        ids = read_track_ids(track_ids) if track_ids else None
        sources: dict[str, VectorSource] = {}
        for path in embeddings:
            source = npy_vectors(path, ids)
            source.name = _unique_name(source.name, sources)
            sources[source.name] = source
        contexts = "users" if log.n_users > 1 else "sessions"
        return Dataset(name, "log", log, sources, default_contexts=contexts)
    if store is None or version_of is None:
        raise UserError(
            "a play log needs embeddings", "pass --embeddings FILE.npy (and --track-ids FILE), or index a library"
        )
    resolved, notes = resolve_library_tracks(store, log.items, library_root)
    keep = resolved != ""
    log = log.take(keep)
    log.items = resolved[keep]
    if len(log) == 0:
        raise UserError(
            f"no track of {Path(log_path).name} is in the library",
            "the track column must hold library track ids or paths relative to the library root (--library-root)",
        )
    sources = {b: store_vectors(store, b, version_of(b)) for b in backends}
    contexts = "users" if log.n_users > 1 else "sessions"
    return Dataset(name + " (library)", "library-log", log, sources, default_contexts=contexts, notes=notes)


def resolve_library_tracks(store, refs: np.ndarray, library_root: Path | str | None) -> tuple[np.ndarray, list[str]]:
    """Map each log reference (track id or path) to a library track id key; "" if unknown."""
    tracks = store.tracks()
    by_id = {str(t.id): str(t.id) for t in tracks}
    by_path = {t.path: str(t.id) for t in tracks}
    root = Path(library_root).expanduser().resolve() if library_root else None
    suffix_maps: dict[int, dict[tuple[str, ...], str | None]] = {}

    def by_suffix(parts: tuple[str, ...]) -> str | None:
        n = len(parts)
        if n not in suffix_maps:
            table: dict[tuple[str, ...], str | None] = {}
            for t in tracks:
                key = Path(t.path).parts[-n:]
                table[key] = None if key in table else str(t.id)  # None: ambiguous
            suffix_maps[n] = table
        return suffix_maps[n].get(parts)

    unique_refs, inverse = np.unique(refs.astype(str), return_inverse=True)
    out = np.empty(len(unique_refs), dtype=object)
    unknown = 0
    for i, ref in enumerate(unique_refs):
        found = None
        if re.fullmatch(r"\d+", ref):
            found = by_id.get(ref)
        if found is None:
            path = Path(ref)
            if path.is_absolute():
                found = by_path.get(str(path))
            elif root is not None:
                found = by_path.get(str(root / path))
            else:
                found = by_suffix(tuple(p for p in path.parts if p not in (".", "")))
        out[i] = found or ""
        unknown += found is None
    notes = []
    if unknown:
        notes.append(
            f"{unknown} of {len(unique_refs)} distinct tracks of the log are not in the library; their rows are left out"
        )
    return out[inverse], notes


def find_split_file(folder: Path, part: str) -> Path:
    for suffix in PARQUET_SUFFIXES + TEXT_SUFFIXES:
        candidate = folder / f"{part}{suffix}"
        if candidate.is_file():
            return candidate
    raise UserError(
        f"{folder} has no {part} file",
        f"a split folder holds {', '.join(SPLIT_PARTS)} as .pqt/.parquet or .tsv/.csv files",
    )


def split_dir_dataset(
    folder: Path | str,
    *,
    embeddings: Sequence[Path | str] = (),
    track_ids: Path | str | None = None,
    store=None,
    backends: Sequence[str] = (),
    version_of: Callable[[str], str] | None = None,
    library_root: Path | str | None = None,
) -> Dataset:
    """The paper's published split files, with `.npy` embeddings or the library's vectors."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder", "give the folder holding train, val, hot_test and cold_test")
    parts = {part: read_play_log(find_split_file(folder, part), require_time=False) for part in SPLIT_PARTS}
    notes: list[str] = []
    if embeddings:
        ids = read_track_ids(track_ids) if track_ids else None
        sources: dict[str, VectorSource] = {}
        for path in embeddings:
            source = npy_vectors(path, ids)
            source.name = _unique_name(source.name, sources)
            sources[source.name] = source
        kind = "split-dir"
    elif store is not None and version_of is not None:
        for part, log in parts.items():
            resolved, part_notes = resolve_library_tracks(store, log.items, library_root)
            keep = resolved != ""
            parts[part] = log.take(keep)
            parts[part].items = resolved[keep]
            notes += [f"{part}: {n}" for n in part_notes]
        sources = {b: store_vectors(store, b, version_of(b)) for b in backends}
        kind = "split-dir"
    else:
        raise UserError("a split folder needs embeddings", "pass --embeddings FILE.npy (and --track-ids FILE)")
    return Dataset(f"split {folder.name}", kind, None, sources, default_contexts="users", parts=parts, notes=notes)
