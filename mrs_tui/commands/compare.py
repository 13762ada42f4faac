"""`mrs-tui compare`: backends (or recommenders) side by side on one seed; `mrs-tui winner`: serve the best."""

from __future__ import annotations

import argparse

from mrs_tui.commands.shared import emit, open_engine


def _names(text: str | None) -> list[str] | None:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compare", parents=[common], help="compare backends or recommenders side by side on one seed")
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--seed", metavar="TRACK", help="track id or path (default: the current session)")
    seed.add_argument("--tracks", metavar="IDS", help="a list of track ids standing in for the session, e.g. 3,8,12")
    p.add_argument("--backends", metavar="A,B,C", help="backends to compare (default: every analysed one)")
    recs = p.add_mutually_exclusive_group()
    recs.add_argument("--recommender", help="the recommender of every column (default: the selected one)")
    recs.add_argument("--recommenders", metavar="X,Y", help="compare recommenders on one backend instead")
    p.add_argument("-k", type=int, default=10, help="list length and overlap depth (default 10)")
    p.set_defaults(run=run_compare)

    p = sub.add_parser("winner", parents=[common], help="the measured best pair per mode, and serving it")
    p.add_argument(
        "--run", dest="eval_run", type=int, metavar="ID", help="evaluation run (default: the latest of your history)"
    )
    p.add_argument("--apply", action="store_true", help="serve hot and cold suggestions with the winners")
    p.add_argument("--clear", action="store_true", help="go back to the selected backend and recommender")
    p.set_defaults(run=run_winner)


def run_compare(args: argparse.Namespace) -> int:
    from mrs_tui.comparison import ComparisonSeed, compare

    engine = open_engine(args)
    seed = ComparisonSeed(
        track=engine.resolve_track(args.seed).id if args.seed else None,
        tracks=tuple(engine.resolve_track(t).id for t in _names(args.tracks)) if args.tracks else None,
    )
    recommenders = _names(args.recommenders) or ([args.recommender] if args.recommender else None)
    result = compare(engine, seed, backends=_names(args.backends), recommenders=recommenders, k=args.k)
    emit(args, result.to_dict(), lambda: format_comparison(result, engine.store))
    return 0


def format_comparison(result, store) -> str:
    width = 30
    labels = result.labels
    lines = [f"{result.seed.describe(store)} · {result.axis} × {result.fixed} · top {result.k}", ""]
    lines.append("     " + "".join(f"{label[: width - 1]:<{width}}" for label in labels))
    for rank in range(result.depth):
        cells = []
        for column in result.columns:
            if rank < len(column.track_ids):
                s = column.result.items[rank]
                mark = result.shared.get(s.track.id, " ")
                cells.append(f"{mark} {s.track.display_title}"[: width - 1].ljust(width))
            else:
                cells.append(("" if rank else (column.error or ""))[: width - 1].ljust(width))
        lines.append(f"{rank + 1:>3}  " + "".join(cells))
    for column in result.columns:
        if not column.track_ids and column.error:
            lines.append(f"{column.label(result.axis)}: {column.error}")
    lines += ["", "overlap (Jaccard@K above the diagonal, rank-biased overlap below):"]
    short = [label[:10] for label in labels]
    lines.append(" " * 11 + "".join(f"{s:>11}" for s in short))
    for i, label in enumerate(short):
        row = []
        for j in range(len(short)):
            value = result.jaccard[i, j] if j > i else result.rbo[i, j] if j < i else float("nan")
            row.append("          -" if value != value else f"{value:11.2f}")
        lines.append(f"{label:>11}" + "".join(row))
    lines += ["", "measured on your history (mean ± 95 % CI, n test sessions):"]
    for column in result.columns:
        m = column.metrics
        if m is None:
            lines.append(f"  {column.label(result.axis)}: not evaluated yet (e in the app, or mrs-tui eval)")
            continue
        parts = []
        for part in ("hot", "cold"):
            summaries = [(name, m.summary(part, name)) for name in ("HitRate", "Recall", "NDCG")]
            text = " ".join(f"{name}@{m.k} {s.format()}" for name, s in summaries if s is not None)
            n = next((s.n for _, s in summaries if s is not None), 0)
            parts.append(f"{part}: {text} (n={n})" if text else f"{part}: –")
        lines.append(f"  {column.label(result.axis)} (run #{m.run_id}): " + " · ".join(parts))
    for paired in result.paired:
        lines.append(f"  {paired.sentence}")
    return "\n".join(lines)


def run_winner(args: argparse.Namespace) -> int:
    from mrs_tui.comparison import describe_winners, latest_history_run, winners

    engine = open_engine(args)
    if args.clear:
        engine.stop_using_winners()
        emit(args, {"served": {}}, "the selected backend and recommender serve every mode again")
        return 0
    if args.apply:
        import sys

        engine.use_winners(args.eval_run)
        for recommender, backend in engine.untrained_winners():
            print(f"training {recommender} on {backend}: the winner needs a model...", file=sys.stderr)
            engine.train(recommender, backend)
    run = latest_history_run(engine.store, args.eval_run)
    best = winners(run)
    served = {
        mode: {"recommender": p.recommender, "backend": p.backend, "run_id": p.run_id}
        for mode, p in engine.served_pairs().items()
    }
    data = {
        "run_id": run.id,
        "winners": {mode: {"recommender": c.recommender, "backend": c.backend} for mode, c in best.items()},
        "served": served,
    }
    text = f"evaluation #{run.id}: {describe_winners(best)}" + (
        "\nserving: " + ", ".join(f"{m}: {p['recommender']} on {p['backend']}" for m, p in served.items())
        if served
        else "\n(apply with: mrs-tui winner --apply)"
    )
    emit(args, data, text)
    return 0
