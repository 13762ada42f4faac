"""Radio refill latency on a 10k-track library with the diversity rules on, against the same
refills with every rule off (the cost of the rules), with knn on planted embeddings.

    python bench/bench_radio.py [--tracks 10000] [--refills 200]
    python bench/bench_radio.py --recommender shallow   # a learned model, trained on a generated history

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


def run(engine: Engine, seed: int, rules: DiversityRules, refills: int, recommender: str | None = None) -> np.ndarray:
    clock = [1_700_000_000.0]
    queue = PlayQueue()
    radio = Radio(
        engine, queue, [seed], rules=rules, batch=5, refill_below=3, clock=lambda: clock[0], recommender=recommender
    )
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


def write_listening(store: Store, tracks: list[int], *, sessions: int = 300, per_session: int = 10) -> None:
    """A generated history for a learned recommender to train on: sessions within one artist's albums."""
    rng = np.random.default_rng(3)
    per_artist = 20  # build_radio_library: 2 albums of 10 per artist, in order
    at = 1_600_000_000.0
    with store.write():
        for _ in range(sessions):
            first = int(rng.integers(0, len(tracks) // per_artist)) * per_artist
            session = store.new_session(at)
            for track in rng.choice(tracks[first : first + per_artist], size=per_session, replace=False):
                store.add_play(session, int(track), "skip" if rng.random() < 0.1 else "complete", at)
                at += 200.0
            at += 3 * 3600.0


def learned_refills(args: argparse.Namespace) -> None:
    """`--recommender NAME`: the same refills served by a trained learned model (quick settings)."""
    import recommenders

    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "lib.db")
        per_album = 10
        made = build_radio_library(
            store, artists=max(1, args.tracks // (2 * per_album)), albums=2, per_album=per_album, dim=args.dim
        )
        write_listening(store, made["tracks"])
        engine = Engine(store, Settings(backend=BACKEND, recommender=args.recommender))
        start = time.perf_counter()
        engine.train(args.recommender, params=dict(recommenders.recommender_class(args.recommender).quick_params))
        print(
            f"library: {len(made['tracks'])} tracks, {args.recommender} trained in {time.perf_counter() - start:.1f} s"
        )
        for name, rules in (("rules on", DiversityRules()), ("rules off", DiversityRules.off())):
            ms = run(Engine(store, Settings(backend=BACKEND)), made["tracks"][0], rules, args.refills, args.recommender)
            print(
                f"{args.recommender} refill, {name:9s}: p50 {np.percentile(ms, 50):6.1f} ms  "
                f"p95 {np.percentile(ms, 95):6.1f} ms  max {ms.max():6.1f} ms  ({args.refills} refills of 5)"
            )
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--refills", type=int, default=200)
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--recommender", default="knn", help="a learned one (shallow, hybrid...) is trained first")
    args = parser.parse_args()
    if args.recommender != "knn":
        learned_refills(args)
        return
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
