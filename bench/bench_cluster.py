"""Indexing and the evaluation grid on a local Ray cluster against the single-process path.

Same machine, same run, same generated library of 30-s clips:

- tracks/s of `musicnn` and `mert` (95M, real size, random weights: speed depends on the
  architecture, not on the weights' values) in one process, and through Ray with 1 and 2
  embedding actors (a local cluster of 2 and 3 logical CPUs: one is the decoding slot);
- Ray's overhead per track: (Ray with 1 actor − single process) / tracks, model loading included
  on both sides (the single process loads its model, the actor loads its own);
- the evaluation grid's wall time, locally and as Ray tasks on 2 CPUs.

The cluster is started before the clock starts, as a user's cluster would be running already.

    nice -n 10 python bench/bench_cluster.py                    # musicnn 12 tracks, mert 4, the grid
    python bench/bench_cluster.py --tracks 40 --heavy-tracks 8
    python bench/bench_cluster.py --quick                       # tiny models: checks the script
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local cluster
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def write_library(folder: Path, count: int, seconds: float) -> None:
    from mrs_tui.demo import STYLES, synthesize, write_track

    styles = [s for s in STYLES if s.name in ("techno", "piano", "chiptune")]
    for index in range(count):
        style = styles[index % len(styles)]
        samples = synthesize(style, seconds, sr=22050, seed=index)
        write_track(folder / f"{index:03d}-{style.name}.wav", samples, 22050, {"title": f"{style.name} {index}"})


def write_weights(name: str, folder: Path, size: str) -> Path:
    from backends.testing import write_random_checkpoint

    options = {"variant": "95m"} if name == "mert" else {}
    return write_random_checkpoint(name, folder, size=size, seed=1, **options)


def fresh_store(path: Path, library: Path):
    from mrs_tui.library import scan
    from mrs_tui.store import Store

    for old in path.parent.glob(path.name + "*"):
        old.unlink()
    store = Store.open(path)
    scan(store, library)
    return store


class Steady:
    """Tracks/s from the first stored result to the last: the pace once the models are loaded."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def __call__(self, progress) -> None:
        if progress.done and (not self.marks or progress.done > self.marks[-1][1]):
            self.marks.append((time.perf_counter(), progress.done))

    @property
    def rate(self) -> float:
        if len(self.marks) < 2:
            return float("nan")
        (t0, d0), (t1, d1) = self.marks[0], self.marks[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else float("nan")


def single_process(name: str, weights: Path, db: Path, library: Path, options: dict) -> tuple[float, float]:
    from backends import load_backend
    from mrs_tui.indexing import Indexer

    store = fresh_store(db, library)
    started = time.perf_counter()
    backend = load_backend(name, weights, **options)
    steady = Steady()
    report = Indexer(store, [backend], batch_size=2).run(progress=steady)
    seconds = time.perf_counter() - started
    assert report.embedded[name] == report.total, report
    store.close()
    return seconds, steady.rate


def on_ray(name: str, weights: Path, db: Path, library: Path, options: dict, actors: int) -> tuple[float, float]:
    import ray

    from mrs_tui.cluster import ClusterOptions
    from mrs_tui.cluster.indexing import BackendPlan, ClusterIndexer

    store = fresh_store(db, library)
    ray.init(num_cpus=actors + 1, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        plan = BackendPlan.of(name, options, weights=str(weights))
        steady = Steady()
        started = time.perf_counter()
        indexer = ClusterIndexer(store, [plan], ClusterOptions("auto", actors=actors), batch_size=2)
        report = indexer.run(progress=steady)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert report.embedded[name] == report.total, report
    store.close()
    return seconds, steady.rate


def grid(quick: bool) -> tuple[float, float]:
    import ray

    from mrs_tui.cluster import ClusterOptions
    from mrs_tui.cluster.grid import RayCells
    from mrs_tui.evaluation import synthetic
    from mrs_tui.evaluation.datasets import Dataset, VectorSource
    from mrs_tui.evaluation.runner import EvalSettings, run_grid

    size = dict(n_users=30, n_items=160, n_plays=2500) if quick else dict(n_users=60, n_items=400, n_plays=8000)
    data = synthetic.generate(**size, seed=3)
    sources = {n: VectorSource(n, data.item_keys, lambda m=m: m) for n, m in data.vectors.items()}
    settings = EvalSettings(ks=(50,), recommenders=["knn", "shallow", "contrastive", "hybrid"], quick=True)

    def dataset() -> Dataset:
        return Dataset("generated", "log", data.log, sources, default_contexts="users")

    started = time.perf_counter()
    local = run_grid(dataset(), settings)
    local_s = time.perf_counter() - started
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        remote = run_grid(dataset(), settings, cells=RayCells(ClusterOptions("auto")))
        ray_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    same = all(
        (a.parts[p][m].mean, a.parts[p][m].half_width) == (b.parts[p][m].mean, b.parts[p][m].half_width)
        for a, b in zip(local.cells, remote.cells, strict=True)
        for p in a.parts
        for m in a.parts[p]
    )
    print(
        f"grid ({len(local.cells)} cells): local {local_s:.1f} s, Ray 2 workers {ray_s:.1f} s "
        f"(x{local_s / ray_s:.2f}); identical results: {same}"
    )
    return local_s, ray_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=12, help="tracks for musicnn")
    parser.add_argument("--heavy-tracks", type=int, default=4, help="tracks for mert")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated track")
    parser.add_argument("--quick", action="store_true", help="tiny models and short tracks: checks the script")
    parser.add_argument("--no-grid", action="store_true")
    args = parser.parse_args()
    size = "tiny" if args.quick else "real"
    seconds = 5.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="mrs-bench-cluster-") as tmp:
        root = Path(tmp)
        print(f"{os.cpu_count()} CPUs; {seconds:.0f}-s tracks; {size}-size random weights")
        print("wall s: load + analyse, all tracks; steady: tracks/s from the first stored batch to the last")
        print(
            f"{'backend':<9} {'tracks':>6} | {'single':>7} {'steady':>7} | {'Ray 1':>7} {'steady':>7} | "
            f"{'Ray 2':>7} {'steady':>7} | {'overhead/trk':>12}"
        )
        for name, count in (("musicnn", args.tracks), ("mert", args.heavy_tracks)):
            library = root / f"library-{name}"
            write_library(library, count, seconds)
            weights = write_weights(name, root / "weights" / name, size)
            options = {"variant": "95m"} if name == "mert" else {}
            db = root / f"{name}.db"
            single, single_rate = single_process(name, weights, db, library, options)
            one, one_rate = on_ray(name, weights, db, library, options, actors=1)
            two, two_rate = on_ray(name, weights, db, library, options, actors=2)
            print(
                f"{name:<9} {count:>6} | {single:>7.1f} {single_rate:>7.2f} | {one:>7.1f} {one_rate:>7.2f} | "
                f"{two:>7.1f} {two_rate:>7.2f} | {(one - single) / count:>11.2f}s"
            )
        if not args.no_grid:
            grid(args.quick)


if __name__ == "__main__":
    main()
