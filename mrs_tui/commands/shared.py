"""What the command line's parts share: options every command takes, opening the store and the
engine from them, printing results, progress lines and opening the app.

`mrs_tui.cli` and every module in `mrs_tui.commands` use it; the commands never import the
cli module back (an import-linter contract in pyproject.toml holds that).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mrs_tui.errors import UserError


def global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument(
        "--db", metavar="PATH", default=default, help="database file (default: $MRS_TUI_DB or the XDG data dir)"
    )
    parser.add_argument(
        "--config", metavar="PATH", default=default, help="settings file (default: $MRS_TUI_CONFIG or XDG config)"
    )
    parser.add_argument("--json", action="store_true", default=default, help="print machine-readable JSON")


def database_path(args: argparse.Namespace) -> Path:
    from mrs_tui.paths import default_db_path

    return Path(args.db).expanduser() if args.db else default_db_path()


def config_file(args: argparse.Namespace) -> Path:
    from mrs_tui.paths import config_path

    return Path(args.config).expanduser() if getattr(args, "config", None) else config_path()


def load_settings(args: argparse.Namespace):
    from mrs_tui.config import Settings

    return Settings.load(config_file(args))


def open_store(args: argparse.Namespace):
    from mrs_tui.store import Store

    return Store.open(database_path(args))


def parse_backend_options(pairs: Sequence[str] | None) -> dict[str, object]:
    """`--backend-option KEY=VALUE` pairs; values true/false become booleans."""
    options: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--backend-option {pair!r} is not KEY=VALUE", "e.g. --backend-option variant=95m")
        lowered = value.strip().lower()
        options[key.strip()] = {"true": True, "false": False}.get(lowered, value.strip())
    return options


def open_engine(args: argparse.Namespace):
    """The engine for a command: its --backend/--recommender, options and the database."""
    from backends import default_backend_name
    from mrs_tui.engine import Engine
    from mrs_tui.store import Store

    settings = load_settings(args)
    names = [n.strip() for n in (getattr(args, "backend", None) or "").split(",") if n.strip()]
    if names:
        settings.backend = names[0]
    if getattr(args, "recommender", None):
        settings.recommender = args.recommender
    options = parse_backend_options(getattr(args, "backend_option", None))
    if getattr(args, "paper_compat", False):
        options["paper_compat"] = True
    targets = names or [default_backend_name(settings.backend)]
    store = Store.open(database_path(args))
    options_by_backend = {name: dict(options) for name in targets} if options else {}
    # `index` builds a big library's search graph itself; other commands never start one that would die with them.
    return Engine(store, settings, backend_options=options_by_backend, background_builds=False)


def emit(args: argparse.Namespace, data: object, text: str | Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text() if callable(text) else text)
    sys.stdout.flush()  # a closed pipe shows here, inside main, not at exit as a traceback


def track_json(track) -> dict:
    return {
        "id": track.id,
        "path": track.display_path,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "genre": track.genre,
        "year": track.year,
        "duration": track.duration,
        "status": track.status,
        "error": track.error,
    }


def fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressLine:
    """One self-rewriting progress line on a terminal; a line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        from mrs_tui.progress import Throttle

        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.throttle = Throttle(0.2 if self.tty else 5.0)

    def __call__(self, text: str, final: bool = False) -> None:
        if self.quiet or not self.throttle.ready(final=final):
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def run_app(args: argparse.Namespace, folder: Path | None, db: Path | None = None) -> int:
    if folder is not None and not folder.is_dir():
        raise UserError(
            f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder",
            "give the folder that holds your music",
        )
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.keymap import check_ui_settings

    settings = load_settings(args)
    folders = [] if folder is not None else [Path(f).expanduser() for f in settings.library_folders]
    for configured in folders:
        if not configured.is_dir():
            raise UserError(
                f"library_folders: {configured} is not a folder",
                f"fix library_folders in {settings.source or 'the config file'}, or give a folder: mrs-tui ~/Music",
            )
    check_ui_settings(settings, str(settings.source or "settings"))  # a bad key or theme: one line, before the app
    app = create_app(db_path=db or database_path(args), folder=folder, settings=settings, folders=folders)
    app.run()
    return app.return_code or 0
