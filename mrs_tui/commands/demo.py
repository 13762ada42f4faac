"""`mrs-tui demo`: write the generated demo library and its listening history, and open the app on it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mrs_tui.commands.shared import emit, run_app


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="create a demo library and open it")
    p.add_argument("--folder", help="where to write the demo library (default: the user cache)")
    # The database: the default one, as for every command, unless it already holds other music.
    p.add_argument("--create-only", action="store_true", help="only write the files, do not open the app")
    p.add_argument("--no-fetch", action="store_true", help="do not fetch the MusiCNN weights (the demo then uses mfcc)")
    p.add_argument(
        "--no-history", action="store_true", help="do not write the generated listening history (sessions marked demo)"
    )
    p.add_argument(
        "--remove-history",
        action="store_true",
        help="delete the generated listening history from the demo database (your own plays are kept) and exit",
    )
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import sys

    from mrs_tui.demo import create_demo_library, demo_database
    from mrs_tui.paths import cache_dir, default_db_path

    folder = Path(args.folder).expanduser() if args.folder else cache_dir() / "demo-library"
    paths = create_demo_library(folder)
    note = None
    if args.db:
        db = Path(args.db).expanduser()
    else:
        db, note = demo_database(folder, default_db_path(), cache_dir() / "demo.db")
    print(f"mrs-tui: the demo uses the database {db}" + (f" ({note})" if note else ""), file=sys.stderr)
    if args.remove_history:
        return _remove_history(args, db)
    history = None if args.no_history else _write_history(folder, db)
    if args.create_only:
        emit(
            args,
            {
                "folder": str(folder),
                "db": str(db),
                "db_note": note,
                "tracks": len(paths),
                "history": None if history is None else dataclasses.asdict(history),
            },
            f"demo library: {len(paths)} tracks in {folder}\n"
            + (f"{history.describe()}\n" if history else "")
            + (
                f"open it with: mrs-tui {folder}"
                if note is None and not args.db
                else f"open it with: mrs-tui --db {db} {folder}"
            ),
        )
        return 0
    if history is not None:
        print(f"mrs-tui: {history.describe()}", file=sys.stderr)
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


def _write_history(folder: Path, db: Path):
    """Scan the demo library into `db` and give it the generated listening history."""
    from mrs_tui.demo import write_demo_history
    from mrs_tui.library import scan
    from mrs_tui.store import Store

    with Store.open(db) as store:
        scan(store, folder)
        return write_demo_history(store)


def _remove_history(args: argparse.Namespace, db: Path) -> int:
    from mrs_tui.demo import remove_demo_history
    from mrs_tui.store import Store

    with Store.open(db) as store:
        removed = remove_demo_history(store)
    emit(args, {"db": str(db), "removed_sessions": removed}, f"removed {removed} generated demo sessions from {db}")
    return 0
