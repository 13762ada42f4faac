"""Keypress to a filled compare screen, and keypress to a refreshed suggestion list, at 10k tracks.

A generated 10k-track library with three analysed backends (vectors with planted style
clusters) and ~20k plays in sessions is driven through the real app (Textual's Pilot,
headless): `v` on a highlighted track until every column of the compare screen is filled,
for 3 backends x knn and 3 backends x a trained learned recommender (quick parameters);
and a cursor move in the library until the "next up" list shows the new seed's suggestions,
for knn and bert4rec. The baseline in the same run is the headless core call the screen
waits for (`compare()` / `Engine.suggest`), so the ratio is what the TUI adds.
Goals: compare p95 under 300 ms; suggestion list p95 under 100 ms.

    python bench/bench_compare.py [--tracks 10000] [--repeats 15] [--learned hybrid] [--keep DIR]

Training the learned recommender at 10k tracks takes minutes: `--keep DIR` keeps the library
and its trained models there, and a later run with the same DIR and sizes reuses them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

BACKENDS = ("mfcc", "musicnn", "mert")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def build(db: Path, tracks: int, plays: int) -> None:
    from backends import embedding_version
    from mrs_tui.evaluation import synthetic
    from mrs_tui.store import Store

    dims = {"mfcc": (40, 0.4), "musicnn": (200, 0.8), "mert": (768, 1.2)}
    data = synthetic.generate(n_users=30, n_items=tracks, n_plays=plays, n_clusters=40, days=120, seed=0, backends=dims)
    with Store.open(db) as store:
        synthetic.write_history(store, data, versions={n: embedding_version(n) for n in BACKENDS})


def train(db: Path, plan: dict[str, tuple[str, ...]]) -> None:
    import recommenders as registry
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine
    from mrs_tui.store import Store

    with Store.open(db) as store:
        engine = Engine(store, Settings(backend="mfcc"))
        for name, backends in plan.items():
            quick = getattr(registry.recommender_class(name), "quick_params", {})
            for backend in backends:
                if store.latest_model(name, backend, engine.version(backend)) is not None:
                    print(f"  {name} on {backend}: the kept model")
                    continue
                started = time.perf_counter()
                engine.train(name, backend, params=dict(quick))
                print(f"  trained {name} on {backend} in {time.perf_counter() - started:.1f} s")


async def drive(db: Path, recommender: str, repeats: int, with_compare: bool = True) -> dict[str, list[float]]:
    from mrs_tui.comparison import ComparisonSeed, compare
    from mrs_tui.config import Settings
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.compare import CompareScreen
    from mrs_tui.tui.widgets.library import TrackList
    from mrs_tui.tui.widgets.suggestions import SuggestionTable

    log: list = []
    app = create_app(db_path=db, settings=Settings(backend="mfcc", recommender=recommender), index_on_start=False)
    out: dict[str, list[float]] = {"compare": [], "compare_core": [], "suggest": [], "suggest_core": []}

    async def until(pilot, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.002)

    async with app.run_test(size=(160, 50), message_hook=log.append) as pilot:
        await until(pilot, lambda: any(isinstance(m, msg.EngineReady) for m in log))
        library = app.screen.query_one(TrackList)
        await until(pilot, lambda: library.row_count > 0)
        library.focus()
        engine = app.engine
        await pilot.press("down")
        await until(pilot, lambda: app.screen.query_one(SuggestionTable).row_count > 0, 120)  # warm the models
        for _ in range(repeats):
            # Keypress to a refreshed suggestion list.
            table = app.screen.query_one(SuggestionTable)
            before = table.items
            started = time.perf_counter()
            await pilot.press("down")
            await until(pilot, lambda t=table, b=before: t.items is not b and t.row_count > 0)
            out["suggest"].append(time.perf_counter() - started)
            seed = library.selected_track_id
            t0 = time.perf_counter()
            engine.suggest(seed)
            out["suggest_core"].append(time.perf_counter() - t0)
            if not with_compare:
                continue
            # Keypress to a filled comparison.
            started = time.perf_counter()
            await pilot.press("v")
            await until(
                pilot,
                lambda: (
                    isinstance(app.screen, CompareScreen)
                    and app.screen.comparison is not None
                    and len(app.screen.query(".column")) == len(app.screen.comparison.columns)
                ),
            )
            out["compare"].append(time.perf_counter() - started)
            t0 = time.perf_counter()
            compare(engine, ComparisonSeed(track=seed), recommenders=[recommender])
            out["compare_core"].append(time.perf_counter() - t0)
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, CompareScreen))
            library.focus()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--plays", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--learned", default="hybrid", help="the learned recommender of the second compare run ('none': knn only)"
    )
    parser.add_argument("--keep", type=Path, help="keep the library and trained models in this folder and reuse them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / f"bench-{args.tracks}-{args.plays}.db"
        started = time.perf_counter()
        if not db.exists():
            build(db, args.tracks, args.plays)
        print(
            f"library: {args.tracks} tracks x {len(BACKENDS)} backends, {args.plays} plays ({time.perf_counter() - started:.1f} s)"
        )
        # The learned compare needs its recommender on all three backends; the list needs bert4rec on one.
        scenarios = [("knn", True)]
        if args.learned != "none":
            train(db, {args.learned: BACKENDS, "bert4rec": ("mfcc",)})
            scenarios += [(args.learned, True), ("bert4rec", False)]
        print(f"\n{'scenario':34s} {'p50 ms':>8s} {'p95 ms':>8s} {'core p50':>9s} {'core p95':>9s} {'p95 ratio':>9s}")
        for recommender, with_compare in scenarios:
            samples = asyncio.run(drive(db, recommender, args.repeats, with_compare))
            rows = [("compare", f"v: 3 backends x {recommender}")] if with_compare else []
            if recommender in ("knn", "bert4rec"):
                rows.append(("suggest", f"cursor: next up ({recommender})"))
            for key, label in rows:  # the ratio: what the app adds to the core call it waits for
                p50, p95 = percentiles(samples[key])
                c50, c95 = percentiles(samples[f"{key}_core"])
                print(f"{label:34s} {p50:8.1f} {p95:8.1f} {c50:9.1f} {c95:9.1f} {p95 / c95:9.2f}")


if __name__ == "__main__":
    main()
