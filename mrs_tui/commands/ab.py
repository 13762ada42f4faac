"""`mrs-tui ab stats`: the blind A/B tallies with their binomial confidence intervals."""

from __future__ import annotations

import argparse

from mrs_tui.commands.shared import emit, open_store


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ab", parents=[common], help="blind A/B comparisons (run them with b in the compare screen)")
    actions = p.add_subparsers(dest="ab_action", required=True)
    stats = actions.add_parser("stats", parents=[common], help="tally per pair with a 95 % Wilson interval")
    stats.set_defaults(run=run_ab_stats)


def run_ab_stats(args: argparse.Namespace) -> int:
    from mrs_tui.comparison import ab_stats

    with open_store(args) as store:
        rows = ab_stats(store)
    emit(
        args,
        rows,
        lambda: "\n".join(r["summary"] for r in rows) or "no blind A/B choice yet (b in the compare screen)",
    )
    return 0
