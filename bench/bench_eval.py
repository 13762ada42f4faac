"""Wall time of a full `mrs-tui eval` grid on a generated 50k-play history.

One listener's library (4,000 tracks by default) with made-up vectors for two backends
named like the real ones (``mfcc``: 90-d, noisier; ``musicnn``: 200-d, cleaner), a year and a
month of sessions, then through the real command line:

1. baseline: ``mrs-tui eval --recommenders popular,random`` — the floor every grid pays
   (reading the history and vectors, the split, two trivial models);
2. the full grid: every registered recommender (plus knn+zscore) on both backends;
3. with ``--seeds 0,1,2``: the same grid again with every learned cell fitted once per seed,
   and the ratio of the two wall times (learned cells should cost about three times as much;
   baselines and knn run once, so the whole grid costs less than three times).

Prints setup time, the wall times and each cell's fit / ranking seconds, plus peak memory.

    .venv/bin/python bench/bench_eval.py [--plays 50000] [--items 4000] [--quick] [--threads 2] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_cli(argv: list[str]) -> tuple[float, dict]:
    from mrs_tui.cli import main

    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"mrs-tui {' '.join(argv)} exited with {code}")
    return seconds, json.loads(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=4_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recommenders", help="default: all registered")
    parser.add_argument("--quick", action="store_true", help="each recommender's quick_params")
    parser.add_argument("--keep", metavar="DIR", help="write the database here and keep it")
    parser.add_argument("--seeds", metavar="0,1,2", help="also time the grid with these model seeds")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from backends import embedding_version
    from mrs_tui.evaluation import synthetic
    from mrs_tui.store import Store

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-eval-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "bench.db"
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    data = synthetic.generate(
        n_users=12,  # listening moods of one person
        n_items=args.items,
        n_plays=args.plays,
        n_clusters=24,
        days=395,
        backends={"mfcc": (90, 1.2), "musicnn": (200, 0.6)},
        session_length=(3, 12),
        seed=0,
    )
    with Store.open(db) as store:
        synthetic.write_history(store, data, versions={n: embedding_version(n) for n in data.vectors})
    setup = time.perf_counter() - started
    print(f"history: {len(data.log)} plays, {args.items} tracks, 2 backends; generated and stored in {setup:.1f} s")
    print(f"torch threads: {torch.get_num_threads()}")

    base = ["--db", str(db), "eval", "--json", "--no-store", "-q", "--backends", "mfcc,musicnn"]
    floor, _ = run_cli([*base, "--recommenders", "popular,random"])
    print(f"baseline grid (popular, random): {floor:.1f} s")
    full_args = base + (["--recommenders", args.recommenders] if args.recommenders else [])
    full_args += ["--quick"] if args.quick else []
    wall, run = run_cli(full_args)
    split = run["split"]
    print(
        f"split: {split['train_rows']} train pairs in {split['train_contexts']} sessions; "
        f"{split['hot_test_contexts']} hot / {split['cold_test_contexts']} cold test sessions; {split['items']} tracks"
    )
    print(f"full grid ({len(run['cells'])} cells{', quick' if args.quick else ''}): {wall:.1f} s wall, "
          f"{wall - floor:+.1f} s over the baseline")  # fmt: skip
    print(f"{'backend':9s}{'recommender':13s}{'fit s':>9s}{'rank s':>9s}{'hot NDCG@50':>14s}{'cold NDCG@50':>14s}")
    for cell in run["cells"]:
        if cell["error"]:
            print(f"{cell['backend']:9s}{cell['recommender']:13s}  failed: {cell['error']}")
            continue
        hot = cell["parts"]["hot"]["NDCG@50"]["mean"]
        cold = cell["parts"].get("cold", {}).get("NDCG@50", {}).get("mean")
        print(
            f"{cell['backend']:9s}{cell['recommender']:13s}{cell['fit_seconds']:9.2f}{cell['eval_seconds']:9.2f}"
            f"{hot:14.3f}{'none' if cold is None else format(cold, '.3f'):>14s}"
        )
    if args.seeds:
        seeded_wall, seeded = run_cli([*full_args, "--seeds", args.seeds])
        n_seeds = len(args.seeds.split(","))
        learned = [c for c in seeded["cells"] if len(c["seeds"]) > 1]
        all_one_seed = sum(c["fit_seconds"] + c["eval_seconds"] for c in run["cells"] if len(c.get("seeds", [])) <= 1)
        learned_many = sum(c["fit_seconds"] + c["eval_seconds"] for c in seeded["cells"] if len(c["seeds"]) > 1)
        same = {(c["backend"], c["recommender"]) for c in learned}
        one = sum(
            c["fit_seconds"] + c["eval_seconds"] for c in run["cells"] if (c["backend"], c["recommender"]) in same
        )
        print(
            f"grid with --seeds {args.seeds}: {seeded_wall:.1f} s wall, {seeded_wall / wall:.2f}x the one-seed grid; "
            f"its {len(learned)} learned cells {learned_many:.1f} s against {one:.1f} s with one seed "
            f"({learned_many / max(one, 1e-9):.2f}x for {n_seeds} seeds); the other cells {all_one_seed - one:.1f} s, run once"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
