"""`mrs-tui history import FILE... [--dry-run]`: listening exports into the play history."""

from __future__ import annotations

import argparse

from mrs_tui.commands.shared import emit, load_settings, open_store
from mrs_tui.errors import UserError


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="for import: ListenBrainz export (.json/.jsonl/.zip), Last.fm scrobble CSV, "
        "Spotify StreamingHistory*.json or Streaming_History_Audio_*.json",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="for import: report what would be imported, write nothing"
    )


def run_import(args: argparse.Namespace) -> int:
    from mrs_tui.imports import apply_import, plan_import

    if not args.files:
        raise UserError("history import needs at least one export file", "e.g. mrs-tui history import scrobbles.csv")
    settings = load_settings(args)
    store = open_store(args)
    plan = plan_import(store, args.files)
    if plan.total == 0 and plan.problems:
        raise UserError(f"no readable listens in {', '.join(args.files)}; first problem: {plan.problems[0]}")
    report = plan.summary()
    if args.dry_run:
        emit(args, {"dry_run": True, **report}, lambda: plan.text() + "\ndry run: nothing was written")
        return 0
    result = apply_import(store, plan, gap_minutes=settings.session_gap_minutes)
    report.update({"dry_run": False, "imported_plays": result.plays, "imported_sessions": result.sessions})
    emit(args, report, lambda: plan.text() + "\n" + result.text())
    return 0
