"""Command line: ``mrs-tui [FOLDER]`` opens the app; subcommands are the same core, headless.

Every subcommand takes ``--json`` for scripts. Problems the user can fix end in a one-line
``mrs-tui: error: ...`` that says what to do, and a non-zero exit code. Heavy modules are
imported inside the commands that need them, so ``mrs-tui --help`` and the app start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mrs_tui import __version__
from mrs_tui.errors import UserError

# Each module adds its subcommands with `register(subparsers, common)`; keep them light to
# import (heavy imports go inside the command functions).
COMMAND_MODULES = (
    "mrs_tui.commands.library",
    "mrs_tui.commands.history",
    "mrs_tui.commands.backends",
    "mrs_tui.commands.demo",
    "mrs_tui.commands.evaluate",
    "mrs_tui.commands.compare",
    "mrs_tui.commands.explain",
    "mrs_tui.commands.ab",
)


# -- shared helpers -------------------------------------------------------------------------


def _db_path(args: argparse.Namespace) -> Path:
    from mrs_tui.paths import default_db_path

    return Path(args.db).expanduser() if args.db else default_db_path()


def load_settings(args: argparse.Namespace):
    from mrs_tui.config import Settings

    return Settings.load(Path(args.config).expanduser() if args.config else None)


def open_store(args: argparse.Namespace):
    from mrs_tui.store import Store

    return Store.open(_db_path(args))


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


def open_engine(args: argparse.Namespace, db_path: Path | None = None):
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
    store = Store.open(db_path or _db_path(args))
    return Engine(store, settings, backend_options={name: dict(options) for name in targets} if options else {})


def emit(args: argparse.Namespace, data: object, text: str | Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


def track_json(track) -> dict:
    return {
        "id": track.id,
        "path": track.path,
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


# -- the app ---------------------------------------------------------------------------


def run_app(args: argparse.Namespace, folder: Path | None, db: Path | None = None) -> int:
    if folder is not None and not folder.is_dir():
        raise UserError(
            f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder",
            "give the folder that holds your music",
        )
    from mrs_tui.tui.app import create_app

    app = create_app(db_path=db or _db_path(args), folder=folder, settings=load_settings(args))
    app.run()
    return app.return_code or 0


# -- argument parsing --------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument(
        "--db", metavar="PATH", default=default, help="database file (default: $MRS_TUI_DB or the XDG data dir)"
    )
    parser.add_argument(
        "--config", metavar="PATH", default=default, help="settings file (default: $MRS_TUI_CONFIG or XDG config)"
    )
    parser.add_argument("--json", action="store_true", default=default, help="print machine-readable JSON")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="mrs-tui",
        description="A terminal playlist assistant. `mrs-tui FOLDER` opens the app on a music folder.",
    )
    _global_options(parser)
    parser.add_argument("--version", action="version", version=f"mrs-tui {__version__}")
    # Subcommands accept the global options too; SUPPRESS keeps their absence from
    # overwriting a value given before the subcommand (`mrs-tui --db X index ...`).
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    try:
        pre = argparse.ArgumentParser(add_help=False)
        _global_options(pre)
        pre_args, rest = pre.parse_known_args(argv)
        wants_help = any(a in ("-h", "--help", "--version") for a in rest)
        if (not rest or rest[0] not in commands) and not wants_help:
            # `mrs-tui ~/Music` opens the app: the one positional is the folder, not a command.
            if len(rest) > 1 or (rest and rest[0].startswith("-")):
                parser.parse_args(argv)  # argparse prints the usage error and exits 2
            return run_app(pre_args, Path(rest[0]).expanduser() if rest else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.run(args)
    except UserError as exc:
        print(f"mrs-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mrs-tui: interrupted; work done so far is kept, run the same command to resume", file=sys.stderr)
        return 130
