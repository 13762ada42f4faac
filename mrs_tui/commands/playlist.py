"""`mrs-tui playlist list|show|export|import|delete`: named playlists and M3U files."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrs_tui.commands.shared import emit, fmt_duration, open_store, track_json
from mrs_tui.errors import UserError

ACTIONS = ("list", "show", "export", "import", "delete")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("playlist", parents=[common], help="playlists: list, show, export or import M3U")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("target", nargs="?", help="playlist name (show/export/delete) or M3U file (import)")
    p.add_argument("file", nargs="?", help="export: the .m3u/.m3u8 file to write")
    p.add_argument("--name", help="import: name of the playlist (default: the file's name)")
    p.add_argument("--absolute", action="store_true", help="export: absolute paths (default: relative to the file)")
    p.set_defaults(run=run_playlist)


def run_playlist(args: argparse.Namespace) -> int:
    from mrs_tui import playlists

    store = open_store(args)
    if args.action == "list":
        rows = store.playlists()
        data = [{"name": p.name, "tracks": p.tracks, "updated_at": p.updated_at} for p in rows]
        emit(args, data, lambda: "\n".join(f"{p.name}  ({p.tracks} tracks)" for p in rows) or "no playlists yet")
        return 0
    if not args.target:
        what = "an M3U file" if args.action == "import" else "a playlist name"
        raise UserError(f"playlist {args.action} needs {what}", f"e.g. mrs-tui playlist {args.action} evening")
    if args.action == "show":
        tracks = playlists.playlist_tracks(store, args.target)
        emit(
            args,
            {"name": args.target, "tracks": [track_json(t) for t in tracks]},
            lambda: (
                "\n".join(
                    f"{i:3d}. {t.artist or '?'} - {t.display_title}  {fmt_duration(t.duration)}"
                    for i, t in enumerate(tracks, 1)
                )
                or f"playlist {args.target!r} is empty"
            ),
        )
        return 0
    if args.action == "export":
        if not args.file:
            raise UserError(
                "playlist export needs a file to write", "e.g. mrs-tui playlist export evening evening.m3u8"
            )
        count = playlists.export_playlist(store, args.target, Path(args.file), absolute=args.absolute)
        emit(args, {"name": args.target, "file": args.file, "tracks": count}, f"wrote {count} tracks to {args.file}")
        return 0
    if args.action == "import":
        result = playlists.import_playlist(store, Path(args.target), name=args.name)
        data = {
            "name": result.name,
            "tracks": len(result.track_ids),
            "by_tags": result.by_tags,
            "missing": result.missing,
        }
        emit(args, data, result.text)
        return 0
    if not store.delete_playlist(args.target):
        raise UserError(f"no playlist named {args.target!r}", "see `mrs-tui playlist list`")
    emit(args, {"deleted": args.target}, f"deleted playlist {args.target!r}")
    return 0
