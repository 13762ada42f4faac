"""Command line: ``mrs-tui [FOLDER]`` opens the app; subcommands are the same core, headless.

Every subcommand takes ``--json`` for scripts. Problems the user can fix end in a one-line
``mrs-tui: error: ...`` that says what to do, and a non-zero exit code. Heavy modules are
imported inside the commands that need them, so ``mrs-tui --help`` and the app start fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from mrs_tui import __version__
from mrs_tui.commands.shared import global_options, run_app
from mrs_tui.errors import UserError

# Each module adds its subcommands with `register(subparsers, common)`; keep them light to
# import (heavy imports go inside the command functions).
COMMAND_MODULES = (
    "mrs_tui.commands.library",
    "mrs_tui.commands.history",
    "mrs_tui.commands.backends",
    "mrs_tui.commands.demo",
    "mrs_tui.commands.evaluate",
    "mrs_tui.commands.playlist",
    "mrs_tui.commands.config",
    "mrs_tui.commands.doctor",
    "mrs_tui.commands.compare",
    "mrs_tui.commands.explain",
    "mrs_tui.commands.ab",
)


def build_parser() -> argparse.ArgumentParser:
    return _parser_and_commands()[0]


def _parser_and_commands() -> tuple[argparse.ArgumentParser, set[str]]:
    parser = argparse.ArgumentParser(
        prog="mrs-tui",
        description="A terminal playlist assistant. `mrs-tui FOLDER` opens the app on a music folder.",
    )
    global_options(parser)
    parser.add_argument("--version", action="version", version=f"mrs-tui {__version__}")
    # Subcommands accept the global options too; SUPPRESS keeps their absence from
    # overwriting a value given before the subcommand (`mrs-tui --db X index ...`).
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, common)
    return parser, set(sub.choices)


def _report_error(exc: UserError, argv: Sequence[str]) -> int:
    """One line on stderr; a JSON object there under --json, so scripts can read it too."""
    if "--json" in argv:
        print(json.dumps({"error": exc.problem, "hint": exc.fix}), file=sys.stderr)
    else:
        print(f"mrs-tui: error: {exc}", file=sys.stderr)
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser_and_commands()
    try:
        pre = argparse.ArgumentParser(add_help=False)
        global_options(pre)
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
        return _report_error(exc, argv)
    except sqlite3.DatabaseError as exc:  # raised mid-command: its transaction was rolled back
        from mrs_tui.commands.shared import database_path
        from mrs_tui.errors import DatabaseError
        from mrs_tui.store.connection import explain_sqlite_error

        return _report_error(DatabaseError(*explain_sqlite_error(exc, database_path(pre_args))), argv)
    except BrokenPipeError:
        # The reader went away (`mrs-tui suggest | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("mrs-tui: interrupted; work done so far is kept, run the same command to resume", file=sys.stderr)
        return 130
