"""Radio refill latency on a 10k-track library with the diversity rules on, against the same
refills with every rule off (the cost of the rules), with knn on planted embeddings.

    python bench/bench_radio.py [--tracks 10000] [--refills 200]

Prints p50/p95/max per refill (each refill queues `batch` tracks after the listener heard the
previous ones) and the ratio rules-on / rules-off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrs_tui.config import Settings  # noqa: E402
from mrs_tui.diversity import DiversityRules  # noqa: E402
from mrs_tui.engine import Engine  # noqa: E402
from mrs_tui.queue import PlayQueue  # noqa: E402
from mrs_tui.radio import Radio  # noqa: E402
from mrs_tui.store import Store  # noqa: E402
from tests.radio_library import BACKEND, build_radio_library  # noqa: E402


def run(engine: Engine, seed: int, rules: DiversityRules, refills: int) -> np.ndarray:
    clock = [1_700_000_000.0]
    queue = PlayQueue()
    radio = Radio(engine, queue, [seed], rules=rules, batch=5, refill_below=3, clock=lambda: clock[0])
    radio.refill(force=True)  # the first refill fits knn on the history: not a steady-state refill
    times = []
    for _ in range(refills):
        while queue.advance() is not None:
            entry = queue.current
            engine.record(entry.track_id, "complete")
            radio.feedback(entry.track_id, "complete")
            clock[0] += 240
            if radio.needs_refill():
                break
        start = time.perf_counter()
        report = radio.refill(force=True)
        times.append(time.perf_counter() - start)
        if not report.added:
            raise SystemExit(f"the radio ran dry: {report.text()}")
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--refills", type=int, default=200)
    parser.add_argument("--dim", type=int, default=200)
    args = parser.parse_args()
    per_album = 10
    artists = max(1, args.tracks // (2 * per_album))
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "lib.db")
        start = time.perf_counter()
        made = build_radio_library(store, artists=artists, albums=2, per_album=per_album, dim=args.dim)
        print(
            f"library: {len(made['tracks']) + len(made['rips']) + len(made['copies'])} tracks, dim {args.dim}, "
            f"built in {time.perf_counter() - start:.1f} s"
        )
        results = {}
        for name, rules in (("rules on", DiversityRules()), ("rules off", DiversityRules.off())):
            engine = Engine(store, Settings(backend=BACKEND, recommender="knn"))
            ms = run(engine, made["tracks"][0], rules, args.refills)
            results[name] = ms
            print(
                f"knn refill, {name:9s}: p50 {np.percentile(ms, 50):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms  "
                f"max {ms.max():6.1f} ms  ({args.refills} refills of 5)"
            )
        ratio = np.percentile(results["rules on"], 95) / np.percentile(results["rules off"], 95)
        print(f"p95 ratio rules on / off: {ratio:.2f}")
        store.close()


if __name__ == "__main__":
    main()
