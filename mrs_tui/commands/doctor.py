"""`mrs-tui doctor`: check the database and its derived files, remove leftovers, rebuild caches."""

from __future__ import annotations

import argparse
import sys

from mrs_tui.commands.shared import database_path, emit


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check the database, vector caches and trained models")
    p.add_argument("--rebuild", action="store_true", help="rebuild damaged or stale vector caches without asking")
    p.add_argument("--check-only", action="store_true", help="report only: remove and rebuild nothing")
    p.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from mrs_tui import doctor

    report = doctor.diagnose(database_path(args))
    if not args.check_only:
        rebuild = args.rebuild
        if report.rebuildable and not rebuild and not args.json and sys.stdin.isatty():
            answer = input(f"rebuild {len(report.rebuildable)} derived file(s) from the database? [y/N] ")
            rebuild = answer.strip().lower() in ("y", "yes")
        doctor.repair(report, rebuild=rebuild)
    emit(args, report.to_dict(), lambda: doctor.describe(report))
    if not report.database_ok:
        return 3
    return 1 if report.problems else 0
