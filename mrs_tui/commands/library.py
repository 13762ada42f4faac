"""Commands over the library: index a folder, list tracks, suggest next tracks."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mrs_tui.commands.shared import (
    ProgressLine,
    emit,
    fmt_duration,
    load_settings,
    open_engine,
    open_store,
    track_json,
)
from mrs_tui.errors import UserError

if TYPE_CHECKING:
    from mrs_tui.library import ScanReport


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("index", parents=[common], help="scan a folder and analyse its tracks")
    p.add_argument("folder", nargs="?", help="default: every folder of library_folders in the config")
    p.add_argument("--backend", help="backend name, or several separated by commas")
    p.add_argument("--paper-compat", action="store_true", help="reproduce the paper's extraction quirks")
    p.add_argument(
        "--backend-option", action="append", metavar="KEY=VALUE", help="a backend option, e.g. variant=95m (repeatable)"
    )
    p.add_argument(
        "--ray",
        metavar="auto|local|ray://HOST:PORT",
        help="analyse on a Ray cluster: an existing one (auto), a new one on this machine (local), or a remote one",
    )
    p.add_argument(
        "--ship-audio", action="store_true", help="with --ray: send the audio to workers that cannot read the folder"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--retry-failed", action="store_true", help="try every file and analysis that failed before again")
    p.add_argument("--fetch", action="store_true", help="download missing backend weights first")
    p.set_defaults(run=run_index)

    p = sub.add_parser("suggest", parents=[common], help="suggest next tracks")
    p.add_argument("--seed", metavar="TRACK", help="track id or path")
    p.add_argument("-k", type=int, default=20, help="how many suggestions (default 20)")
    p.add_argument("--backend")
    p.add_argument("--recommender")
    p.add_argument(
        "--pool",
        choices=["all", "hot", "cold"],
        default="all",
        help="candidates: cold = only tracks the model has not learned from (cold-start mode)",
    )
    p.add_argument("--paper-compat", action="store_true")
    p.add_argument("--backend-option", action="append", metavar="KEY=VALUE", help="a backend option (repeatable)")
    p.set_defaults(run=run_suggest)

    p = sub.add_parser("library", parents=[common], help="list tracks")
    p.add_argument("--status", choices=["ok", "failed", "missing"])
    p.add_argument("--search", metavar="WORDS", help="tracks whose tags or path hold every word, as in the app")
    p.set_defaults(run=run_library)


def index_folders(args: argparse.Namespace) -> list[Path]:
    """The folder given, or else the config's `library_folders`; each one checked."""
    if args.folder is not None:
        folder = Path(args.folder).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder",
                "give the folder that holds your music",
            )
        return [folder]
    settings = load_settings(args)
    where = settings.source or "the config file"
    folders = [Path(f).expanduser() for f in settings.library_folders]
    if not folders:
        raise UserError(
            "no folder given, and library_folders is empty",
            f"give the folder that holds your music (mrs-tui index ~/Music), or set library_folders in {where}",
        )
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"library_folders: {folder} is not a folder", f"fix library_folders in {where}")
    return folders


def combined_scan(scans: list[ScanReport]) -> ScanReport:
    """One report for scans of several folders, as a single folder's would read."""
    from mrs_tui.library import ScanReport

    if len(scans) == 1:
        return scans[0]
    total = ScanReport(root=", ".join(s.root for s in scans))
    for s in scans:
        for name in ("added", "changed", "moved", "missing", "failed", "retried"):
            getattr(total, name).extend(getattr(s, name))
        total.unchanged += s.unchanged
        total.cancelled = total.cancelled or s.cancelled
    return total


def run_index(args: argparse.Namespace) -> int:
    folders = index_folders(args)
    cluster = None
    if args.ship_audio and not args.ray:
        raise UserError("--ship-audio only applies to a cluster run", "add --ray auto (or local, or ray://HOST:PORT)")
    if args.ray:
        from mrs_tui.cluster import ClusterOptions, require_ray

        cluster = ClusterOptions(args.ray, ship_audio=args.ship_audio)
        require_ray()  # before the scan: say what to install at once
    engine = open_engine(args)
    engine.store.check_pages()  # a long run of writes must not start on a damaged file
    names = args.backend.split(",") if args.backend else [engine.backend]
    from backends import WEIGHTS_MISSING, backend_status, get_spec

    for name in names:
        get_spec(name)
        if backend_status(name).state == WEIGHTS_MISSING and not args.fetch:
            raise UserError(
                f"the {name} weights are not installed (a download)",
                f"run `mrs-tui backends fetch {name}` first, or pass --fetch to download them now",
            )
    line = ProgressLine(args.json or args.quiet)
    cancel = threading.Event()
    scans, ids = [], []
    for folder in folders:
        scans.append(
            engine.scan(folder, progress=lambda d, t, p: line(f"scanning {d}/{t}"), retry_failed=args.retry_failed)
        )
        line(f"scan{f' of {folder}' if len(folders) > 1 else ''}: {scans[-1].summary()}", final=True)
        ids += [t.id for t in engine.store.tracks(under=str(folder.resolve()))]
    scan = combined_scan(scans)
    if args.retry_failed:
        engine.store.delete_failed_embeddings(ids)

    def on_progress(p) -> None:
        eta = f", ETA {fmt_duration(p.eta)}" if p.eta is not None else ""
        detail = f" [{p.describe_backends()}]" if len(p.backends) > 1 else ""
        detail += f" [{p.describe_nodes()}]" if p.nodes else ""
        decoded = f", decoded {p.decoded}" if p.decoded > p.done else ""
        line(f"analysing {p.done}/{p.total} ({p.rate:.1f} tracks/s{eta}{decoded}){detail}")

    try:
        report = engine.index(names, track_ids=ids, progress=on_progress, cancel=cancel, cluster=cluster)
    except KeyboardInterrupt:
        cancel.set()
        raise
    line(report.summary(), final=True)
    from mrs_tui.store.records import readable_path

    data = {
        "folder": str(folders[0].resolve()),
        "folders": [str(f.resolve()) for f in folders],
        "scan": {
            "added": len(scan.added),
            "changed": len(scan.changed),
            "moved": len(scan.moved),
            "missing": len(scan.missing),
            "retried": len(scan.retried),
            "failed": [{"path": readable_path(p), "reason": r} for p, r in scan.failed],
            "unchanged": scan.unchanged,
        },
        "index": {
            "backends": names,
            "embedded": report.embedded,
            "failed": [{"path": readable_path(p), "reason": r} for p, r in report.failed],
            "backend_failures": [
                {"path": readable_path(p), "backend": b, "reason": r} for p, b, r in report.backend_failures
            ],
            "seconds": round(report.seconds, 3),
            "cancelled": report.cancelled,
            "nodes": [{"node": n.node, "decoded": n.decoded, "embedded": n.embedded} for n in report.nodes],
        },
    }

    def text() -> str:
        from mrs_tui.store.records import readable_path

        lines = [f"{scan.summary()}", report.summary()]
        if report.nodes:
            from mrs_tui.indexing import describe_nodes

            lines.append(f"on {len(report.nodes)} cluster nodes: {describe_nodes(report.nodes)}")
        for path, reason in scan.failed + report.failed:
            lines.append(f"  failed: {readable_path(path)}: {reason}")
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError(f"-k {args.k} asks for no suggestions", "give how many you want, e.g. -k 20")
    if args.seed and not args.seed.isdigit() and Path(args.seed).expanduser().is_dir():
        raise UserError(f"{args.seed} is a folder", "give one track: its id or its file path")
    engine = open_engine(args)
    seed = engine.resolve_track(args.seed).id if args.seed else None
    if len(engine.catalogue()) == 0:
        raise UserError(
            f"nothing is analysed with {engine.backend} yet",
            f"index the library first: mrs-tui index FOLDER --backend {engine.backend}",
        )
    result = engine.suggest(seed, k=args.k, pool=args.pool)
    data = {
        "backend": result.backend,
        "version": result.version,
        "recommender": result.recommender,
        "mode": result.mode,
        "fallback_from": result.fallback_from,
        "seed": track_json(result.seed) if result.seed else None,
        "note": result.note,
        "suggestions": [
            {**track_json(s.track), "score": round(s.score, 6), "new": s.new, "reason": s.reason} for s in result.items
        ],
    }

    def text() -> str:
        lines = [result.describe()]
        if result.note:
            lines.append(
                result.note
                + (f" (train it: mrs-tui train --recommenders {result.fallback_from})" if result.fallback_from else "")
            )
        for rank, s in enumerate(result.items, 1):
            badge = " [new]" if s.new else ""
            who = f"{s.track.artist} - " if s.track.artist else ""
            lines.append(f"{rank:3d}. {s.score:6.3f}  {who}{s.track.display_title}{badge}   ({s.reason})")
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def run_library(args: argparse.Namespace) -> int:

    store = open_store(args)
    tracks = store.tracks(status=args.status, search=args.search)

    def text() -> str:
        lines = []
        for t in tracks:
            status = t.status if t.status != "failed" else f"failed: {t.error}"
            lines.append(
                f"{t.id:6d}  {(t.artist or '?')[:24]:24s}  {t.display_title[:40]:40s}  "
                f"{fmt_duration(t.duration):>6s}  {status}"
            )
        if lines:
            return "\n".join(lines)
        if args.search:
            return f"no track matches {args.search!r}"
        return "the library is empty: run mrs-tui index FOLDER"

    emit(args, [track_json(t) for t in tracks], text)
    return 0
