"""`mrs-tui config`: the settings in effect, the commented default file, and writing it."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from mrs_tui.commands.shared import config_file, emit, load_settings
from mrs_tui.errors import UserError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "config",
        parents=[common],
        help="show the settings in effect, or write the commented default config file",
        description="Without options: the settings in effect (defaults, the config file, MRS_TUI_* variables).",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--default", action="store_true", help="print the commented default config file")
    what.add_argument("--init", action="store_true", help="write the commented default config file (never overwrites)")
    what.add_argument("--path", action="store_true", help="print where the config file is read from")
    what.add_argument("--keys", action="store_true", help="list the action names the keys table can remap")
    p.set_defaults(run=run_config)


def run_config(args: argparse.Namespace) -> int:
    from mrs_tui.config import default_config_text

    path = config_file(args)
    if args.default:
        print(default_config_text(), end="")
        return 0
    if args.path:
        emit(args, {"path": str(path), "exists": path.exists()}, str(path))
        return 0
    if args.keys:
        from mrs_tui.tui.keymap import check_ui_settings, remappable

        settings = load_settings(args)
        keymap = check_ui_settings(settings, str(path))
        actions = remappable()
        rows = {
            name: {"key": keymap.get(name, key), "default": key, "does": does} for name, (key, does) in actions.items()
        }
        emit(
            args,
            rows,
            lambda: "\n".join(f"{name:22} {row['key']:18} {row['does']}" for name, row in sorted(rows.items())),
        )
        return 0
    if args.init:
        if path.exists():
            raise UserError(f"{path} already exists", "edit it, or move it away first to start from the default")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(default_config_text(), encoding="utf-8")
        emit(args, {"path": str(path)}, f"wrote {path}; uncomment a line to change a setting")
        return 0
    settings = load_settings(args)
    source = f"defaults, {path}" if path.exists() else f"defaults ({path} does not exist)"
    header = f"# settings in effect: {source}, MRS_TUI_* variables\n"
    emit(args, {"path": str(path), "settings": asdict(settings)}, lambda: header + settings.as_toml())
    return 0
