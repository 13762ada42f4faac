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


async def drive(
    db: Path, recommender: str, repeats: int, with_compare: bool = True, pause: float = 1.0
) -> dict[str, list[float]]:
    """Keypress to the first frame that shows the result, `repeats` times, `pause` s apart.

    Keys are posted to the app as a terminal's would be, and the clock stops at the first
    screen refresh after the widget holds the new rows (`call_after_refresh`). Pilot's
    `press` is not used: it also waits for the whole process to go idle, in steps of 20 ms,
    which measures the test harness more than the app.
    """
    from textual import events

    from mrs_tui.comparison import ComparisonSeed, compare
    from mrs_tui.config import Settings
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.compare import CompareScreen
    from mrs_tui.tui.widgets.library import TrackList
    from mrs_tui.tui.widgets.suggestions import SuggestionTable

    ready: list = []  # only EngineReady: a hook that kept every message would keep every screen alive
    app = create_app(db_path=db, settings=Settings(backend="mfcc", recommender=recommender), index_on_start=False)
    out: dict[str, list[float]] = {"compare": [], "compare_core": [], "suggest": [], "suggest_core": []}

    async def until(predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.001)

    async def key_to_frame(key: str, character: str | None, filled) -> float:
        started = time.perf_counter()
        app.post_message(events.Key(key, character))
        await until(filled)
        painted = asyncio.Event()
        app.screen.call_after_refresh(painted.set)
        await painted.wait()
        return time.perf_counter() - started

    def compare_filled() -> bool:
        screen = app.screen
        return (
            isinstance(screen, CompareScreen)
            and screen.comparison is not None
            and len(screen.query(".column")) == len(screen.comparison.columns)
        )

    hook = lambda m: isinstance(m, msg.EngineReady) and ready.append(m)  # noqa: E731
    async with app.run_test(size=(160, 50), message_hook=hook) as pilot:
        await until(lambda: bool(ready))
        library = app.screen.query_one(TrackList)
        await until(lambda: library.row_count > 0)
        library.focus()
        engine = app.engine
        await pilot.press("down")
        await until(lambda: app.screen.query_one(SuggestionTable).row_count > 0, 120)  # warm the models
        await asyncio.sleep(pause)
        for _ in range(repeats):
            table = app.screen.query_one(SuggestionTable)
            before = table.items
            out["suggest"].append(
                await key_to_frame("down", None, lambda t=table, b=before: t.items is not b and t.row_count > 0)
            )
            seed = library.selected_track_id
            t0 = time.perf_counter()
            engine.suggest(seed)
            out["suggest_core"].append(time.perf_counter() - t0)
            await asyncio.sleep(pause)
            if not with_compare:
                continue
            out["compare"].append(await key_to_frame("v", "v", compare_filled))
            t0 = time.perf_counter()
            compare(engine, ComparisonSeed(track=seed), recommenders=[recommender])
            out["compare_core"].append(time.perf_counter() - t0)
            await asyncio.sleep(pause)
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, CompareScreen))
            library.focus()
            await asyncio.sleep(pause)
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
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between keys, as a person reads (0.3: someone hurrying)"
    )
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
            samples = asyncio.run(drive(db, recommender, args.repeats, with_compare, args.pause))
            rows = [("compare", f"v: 3 backends x {recommender}")] if with_compare else []
            if recommender in ("knn", "bert4rec"):
                rows.append(("suggest", f"cursor: next up ({recommender})"))
            for key, label in rows:  # the ratio: what the app adds to the core call it waits for
                p50, p95 = percentiles(samples[key])
                c50, c95 = percentiles(samples[f"{key}_core"])
                print(f"{label:34s} {p50:8.1f} {p95:8.1f} {c50:9.1f} {c95:9.1f} {p95 / c95:9.2f}")


if __name__ == "__main__":
    main()
