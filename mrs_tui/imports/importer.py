"""The dry-run plan of an import, and writing it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrs_tui.imports.formats import Listen, ParsedFile, read_export
from mrs_tui.imports.matching import TrackMatcher, listen_key
from mrs_tui.store import ImportedPlay, Store

EXAMPLES = 5
# Last.fm counts a scrobble after half the track or 4 minutes, whichever comes first.
SCROBBLE_CAP_S = 240.0
SESSION_GAP_MINUTES = 30.0


@dataclass
class PlannedPlay:
    listen: Listen
    track_id: int
    event: str  # "complete" or "skip"
    how: str  # how it was matched
    key: str


@dataclass
class ImportPlan:
    files: list[dict] = field(default_factory=list)  # name, format, listens, problems
    plays: list[PlannedPlay] = field(default_factory=list)  # matched and not yet imported
    total: int = 0
    already_imported: int = 0
    duplicates: int = 0  # the same listen twice in these files
    not_music: int = 0
    unmatched: Counter = field(default_factory=Counter)  # (artist, title) -> listens
    ambiguous: Counter = field(default_factory=Counter)
    match_kinds: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.plays)

    @property
    def skips(self) -> int:
        return sum(1 for p in self.plays if p.event == "skip")

    def summary(self) -> dict:
        return {
            "files": self.files,
            "listens": self.total,
            "matched": self.matched,
            "matched_by": dict(self.match_kinds),
            "skips": self.skips,
            "unmatched": sum(self.unmatched.values()),
            "ambiguous": sum(self.ambiguous.values()),
            "already_imported": self.already_imported,
            "duplicates": self.duplicates,
            "not_music": self.not_music,
            "unreadable_rows": len(self.problems),
            "unmatched_examples": [
                {"artist": a, "title": t, "listens": n} for (a, t), n in self.unmatched.most_common(EXAMPLES)
            ],
            "ambiguous_examples": [
                {"artist": a, "title": t, "listens": n} for (a, t), n in self.ambiguous.most_common(EXAMPLES)
            ],
            "problems": self.problems[:EXAMPLES],
            "notes": self.notes,
        }

    def text(self) -> str:
        lines = []
        for f in self.files:
            lines.append(f"{f['name']}: {f['format']}, {f['listens']} listens, {f['problems']} unreadable rows")
        lines.append(
            f"{self.total} listens: {self.matched} to import ({self.skips} as skips), "
            f"{sum(self.unmatched.values())} unmatched, {sum(self.ambiguous.values())} ambiguous, "
            f"{self.already_imported} already imported, {self.duplicates} duplicates"
            + (f", {self.not_music} podcast/audiobook rows left out" if self.not_music else "")
        )
        if self.match_kinds:
            lines.append("matched by: " + ", ".join(f"{k} {n}" for k, n in self.match_kinds.most_common()))
        for title, counter in (("unmatched", self.unmatched), ("ambiguous", self.ambiguous)):
            if counter:
                lines.append(f"{title}, most frequent:")
                lines += [f"  {n:5d} × {a} - {t}" for (a, t), n in counter.most_common(EXAMPLES)]
        if self.problems:
            more = len(self.problems) - EXAMPLES
            lines.append("unreadable rows:")
            lines += [f"  {p}" for p in self.problems[:EXAMPLES]]
            if more > 0:
                lines.append(f"  ... and {more} more")
        lines += self.notes
        return "\n".join(lines)


@dataclass
class ImportResult:
    sessions: int
    plays: int
    skips: int

    def text(self) -> str:
        return f"imported {self.plays} plays ({self.skips} skips) in {self.sessions} sessions"


ProgressFn = Callable[[int, int, str], None]


def plan_import(store: Store, paths: Sequence[Path | str], *, progress: ProgressFn | None = None) -> ImportPlan:
    """Read and match every listen in `paths`; nothing is written."""
    parsed: list[ParsedFile] = []
    for index, path in enumerate(paths):
        if progress is not None:
            progress(index, len(paths), str(path))
        parsed += read_export(Path(path))
    matcher = TrackMatcher(store.tracks(status="ok"))
    plan = ImportPlan()
    seen: set[str] = set()
    for file in parsed:
        plan.files.append(
            {"name": file.name, "format": file.format, "listens": len(file.listens), "problems": len(file.problems)}
        )
        plan.problems += file.problems
        plan.notes += file.notes
        plan.not_music += file.not_music
        plan.total += len(file.listens)
        for listen in file.listens:
            key = listen_key(listen)
            if key in seen:
                plan.duplicates += 1
                continue
            seen.add(key)
            match = matcher.match(listen)
            if match.how == "unmatched":
                plan.unmatched[(listen.artist, listen.title)] += 1
                continue
            if match.how == "ambiguous":
                plan.ambiguous[(listen.artist, listen.title)] += 1
                continue
            track = matcher.tracks[match.track_id]
            plan.plays.append(PlannedPlay(listen, match.track_id, _event(listen, track.duration), match.how, key))
    known = store.imported_keys(p.key for p in plan.plays)
    if known:
        plan.already_imported = sum(1 for p in plan.plays if p.key in known)
        plan.plays = [p for p in plan.plays if p.key not in known]
    plan.match_kinds = Counter(p.how for p in plan.plays)
    if progress is not None:
        progress(len(paths), len(paths), "")
    return plan


def _event(listen: Listen, duration: float | None) -> str:
    if listen.skipped:
        return "skip"
    if listen.played_s is not None and duration and listen.played_s < min(duration / 2, SCROBBLE_CAP_S):
        return "skip"
    return "complete"


def apply_import(store: Store, plan: ImportPlan, *, gap_minutes: float = SESSION_GAP_MINUTES) -> ImportResult:
    """Write the plan's plays in one transaction, grouped into sessions per service."""
    gap = gap_minutes * 60.0
    by_source: dict[str, list[PlannedPlay]] = {}
    for play in plan.plays:
        by_source.setdefault(play.listen.source, []).append(play)
    sessions_out: list[tuple[str, list[list[ImportedPlay]]]] = []
    for source, plays in by_source.items():
        plays.sort(key=lambda p: p.listen.at)
        sessions: list[list[ImportedPlay]] = []
        last_end = None
        for p in plays:
            listen = p.listen
            if last_end is None or listen.at - last_end > gap:
                sessions.append([])
            file = listen.where.rsplit(":", 1)[0]
            sessions[-1].append(ImportedPlay(p.key, p.track_id, p.event, listen.at, listen.played_s, file))
            last_end = listen.at + (listen.played_s or 0.0)
        sessions_out.append((f"import:{source}", sessions))
    n_sessions = n_plays = 0
    with store.write():
        for source, sessions in sessions_out:
            s, n = store.add_imported_sessions(source, sessions)
            n_sessions += s
            n_plays += n
    return ImportResult(n_sessions, n_plays, plan.skips)
