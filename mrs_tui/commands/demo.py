"""`mrs-tui demo`: write the generated demo library and open the app on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrs_tui.commands.shared import emit, run_app


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="create a demo library and open it")
    p.add_argument("--folder", help="where to write the demo library (default: the user cache)")
    p.add_argument("--create-only", action="store_true", help="only write the files, do not open the app")
    p.add_argument("--no-fetch", action="store_true", help="do not fetch the MusiCNN weights (the demo then uses mfcc)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from mrs_tui.demo import create_demo_library
    from mrs_tui.paths import cache_dir

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
    if not args.no_fetch:
        _fetch_default_weights()
    return run_app(args, folder, db)


def _fetch_default_weights() -> None:
    """Give the demo the default backend, MusiCNN: its weights are a small PyPI download."""
    import sys

    from backends import backend_status
    from mrs_tui.errors import UserError

    if backend_status("musicnn").ready:
        return
    print("fetching the MusiCNN weights from PyPI (musicnn==0.1.0, ISC licence)...", file=sys.stderr)
    try:
        from backends.musicnn import MusicnnBackend

        MusicnnBackend.fetch()
    except UserError as exc:
        print(f"mrs-tui: the demo uses mfcc instead: {exc}", file=sys.stderr)
