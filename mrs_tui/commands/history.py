"""`mrs-tui history show`: the play history, session by session."""

from __future__ import annotations

import argparse
import time

from mrs_tui.commands.shared import emit, open_store
from mrs_tui.errors import UserError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[common], help="the play history; import listening exports")
    p.add_argument("action", nargs="?", default="show", choices=["show", "import"])
    p.add_argument("--limit", type=int, default=0, help="only the last N sessions")
    from mrs_tui.commands.history_import import add_import_arguments

    add_import_arguments(p)
    p.set_defaults(run=run_history)


def run_history(args: argparse.Namespace) -> int:
    if args.action == "import":
        from mrs_tui.commands.history_import import run_import

        return run_import(args)
    if args.action != "show":
        raise UserError(f"unknown history action {args.action!r}", "use: mrs-tui history show")
    store = open_store(args)
    if args.limit > 0:
        sessions = store.latest_sessions(args.limit)
    else:
        sessions = store.sessions()[-args.limit :] if args.limit else store.sessions()
    plays_of = {session["id"]: store.plays(session_id=session["id"]) for session in sessions}
    shown = {p.track_id for plays in plays_of.values() for p in plays}
    tracks = {t.id: t for t in store.tracks(ids=shown)}
    out = []
    for session in sessions:
        plays = plays_of[session["id"]]
        out.append(
            {
                **session,
                "plays": [
                    {
                        "track_id": p.track_id,
                        "event": p.event,
                        "at": p.at,
                        "position_s": p.position_s,
                        "title": tracks[p.track_id].display_title if p.track_id in tracks else None,
                        "artist": tracks[p.track_id].artist if p.track_id in tracks else None,
                    }
                    for p in plays
                ],
            }
        )

    def text() -> str:
        if not out:
            return "no plays yet: play previews in the app (mrs-tui) to build a history"
        lines = []
        for s in out:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["started_at"]))
            lines.append(f"session {s['id']} · {when} · {len(s['plays'])} events")
            for p in s["plays"]:
                at = time.strftime("%H:%M:%S", time.localtime(p["at"]))
                lines.append(f"  {at}  {p['event']:8s} {p['artist'] or '?'} - {p['title']}")
        return "\n".join(lines)

    emit(args, out, text)
    return 0
