"""`mrs-tui demo`: write the generated demo library and open the app on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrs_tui.cli import emit, run_app


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="create a demo library and open it")
    p.add_argument("--folder", help="where to write the demo library (default: the user cache)")
    p.add_argument("--create-only", action="store_true", help="only write the files, do not open the app")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from mrs_tui.config import cache_dir
    from mrs_tui.demo import create_demo_library

    folder = Path(args.folder).expanduser() if args.folder else cache_dir() / "demo-library"
    paths = create_demo_library(folder)
    db = Path(args.db).expanduser() if args.db else cache_dir() / "demo.db"
    if args.create_only:
        emit(
            args,
            {"folder": str(folder), "db": str(db), "tracks": len(paths)},
            f"demo library: {len(paths)} tracks in {folder}\nopen it with: mrs-tui --db {db} {folder}",
        )
        return 0
    return run_app(args, folder, db)
