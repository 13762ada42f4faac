"""`mrs-tui explain TRACK`: why a track is suggested."""

from __future__ import annotations

import argparse

from mrs_tui.commands.shared import emit, open_engine


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("explain", parents=[common], help="why a track is suggested (mode, neighbours, tags, agreement)")
    p.add_argument("track", metavar="TRACK", help="track id or path")
    p.add_argument("--seed", metavar="S", help="the selected track the list is for (id or path)")
    p.add_argument("--backend")
    p.add_argument("--recommender")
    p.add_argument("-k", type=int, default=10, help="top K the other pairs are searched in (default 10)")
    p.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from mrs_tui.explain import explain

    engine = open_engine(args)
    track = engine.resolve_track(args.track)
    seed = engine.resolve_track(args.seed).id if args.seed else None
    pinned = {"backend": args.backend or engine.backend, "recommender": args.recommender or engine.recommender}
    if not args.backend and not args.recommender:
        pinned = {}  # the measured winners serve, when applied
    result = explain(engine, track.id, seed=seed, k=args.k, **pinned)
    emit(args, result.to_dict(), lambda: "\n".join(result.lines()))
    return 0
