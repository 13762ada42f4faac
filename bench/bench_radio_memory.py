"""Memory of the running app (RSS) on a 10k-track library with two analysed backends, before
and after an hour of simulated radio.

    python bench/bench_radio_memory.py [--tracks 10000] [--minutes 60] [--quick]

The real app (`create_app`, driven headless by Textual's test pilot) on a library of planted
embeddings for two backends (mfcc and musicnn vectors; no model runs). Every track's file is a
link to one generated 30-s clip, so each play decodes real audio. The player is the real
`Player`'s bookkeeping on a pretend device that reaches the end of a preview at once (the tests'
`FakeDevice`): an hour of 30-s previews is 120 tracks, played as fast as the app moves on, each
one recorded, learned from by the radio and followed by new suggestions. Half way the backend
changes (as `b` does) and a new radio starts, so both backends' vectors and indexes are loaded.

Prints the process's resident memory (VmRSS from /proc/self/status) after the imports, once the
app shows the library, after the hour, and the peak (VmHWM), with the growth over the hour.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backends  # noqa: E402
from mrs_tui.config import Settings  # noqa: E402
from mrs_tui.demo import STYLES, synthesize, write_track  # noqa: E402
from mrs_tui.store import EmbeddingRow, Store  # noqa: E402
from mrs_tui.tui.app import create_app  # noqa: E402
from tests.radio_library import BACKEND, build_radio_library  # noqa: E402
from tests.test_tui_player import FakeDevice  # noqa: E402

SECOND_BACKEND = "musicnn"
CLIP_RATE = 22050


def memory_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status (Linux only)")


def build(folder: Path, tracks: int, dim: int) -> tuple[Path, list[int]]:
    db = folder / "lib.db"
    store = Store.open(db)
    per_album = 10
    made = build_radio_library(
        store,
        artists=max(1, tracks // (2 * per_album)),
        albums=2,
        per_album=per_album,
        dim=dim,
        root=str(folder / "music"),
    )
    clip = write_track(folder / "clip.wav", synthesize(STYLES[1], 30.0, sr=CLIP_RATE, seed=1), CLIP_RATE)
    rng = np.random.default_rng(1)
    version = backends.embedding_version(SECOND_BACKEND)
    centres: dict[str, np.ndarray] = {}
    rows = []
    for track in store.tracks():
        path = Path(track.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.symlink(clip, path)
        centre = centres.setdefault(track.artist or "", rng.normal(size=50) * 3)
        rows.append(EmbeddingRow(track.id, SECOND_BACKEND, version, (centre + rng.normal(size=50)).astype(np.float32)))
    store.put_embeddings(rows)
    store.close()
    return db, made["tracks"]


async def listen(db: Path, seed: int, minutes: float, preview_seconds: float) -> dict[str, float]:
    player = FakeDevice()
    app = create_app(
        db_path=db,
        settings=Settings(backend=BACKEND, recommender="knn", preview_seconds=preview_seconds),
        player=player,
    )
    figures: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:

        async def until(predicate, timeout: float = 300.0) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise SystemExit("the app did not get there in time")
                await pilot.pause(0.02)

        await until(lambda: app.engine is not None and app.main is not None and app.main.library.tracks)
        await until(lambda: app.main.nextup.table.items)
        gc.collect()
        figures["ready"] = memory_mib()
        plays = int(minutes * 60 / preview_seconds)
        started = time.perf_counter()
        app.start_radio([seed])
        await until(lambda: player.started)
        warm_at = max(3, plays // 10)
        for n in range(plays):
            if n == warm_at:  # first-use costs (faiss, the recommender, decoders) are behind us
                gc.collect()
                figures["warm"] = memory_mib()
            if n == plays // 2 + 3:  # the second backend is loaded and in use too
                gc.collect()
                figures["both"] = memory_mib()
            if n == plays // 2:  # the other backend, as `b` and then `R` would
                app.stop_radio()
                app.engine.backend = SECOND_BACKEND
                app.start_radio([player.started[-1]])
                await until(lambda: app.radio is not None and app.radio.backend == SECOND_BACKEND)
            before = len(player.started)
            player.run_out()
            await until(lambda before=before: len(player.started) > before)
        await until(lambda: app.engine.store.play_count(("complete",)) >= plays)
        figures["seconds"] = time.perf_counter() - started
        figures["plays"] = app.engine.store.play_count(("complete",))
        gc.collect()
        figures["after"] = memory_mib()
        await pilot.press("q")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated listening time")
    parser.add_argument("--preview-seconds", type=float, default=30.0)
    parser.add_argument("--dim", type=int, default=200, help="width of the first backend's vectors")
    parser.add_argument("--quick", action="store_true", help="2,000 tracks and 10 simulated minutes")
    args = parser.parse_args()
    if args.quick:
        args.tracks, args.minutes = 2_000, 10.0
    imports = memory_mib()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        db, tracks = build(Path(folder), args.tracks, args.dim)
        print(
            f"library: {args.tracks} tracks, {BACKEND} (dim {args.dim}) and {SECOND_BACKEND} (dim 50) vectors, "
            f"built in {time.perf_counter() - start:.1f} s"
        )
        gc.collect()
        built = memory_mib()
        f = asyncio.run(listen(db, tracks[0], args.minutes, args.preview_seconds))
    peak = memory_mib("VmHWM")
    growth = f["after"] - f["ready"]
    print(f"RSS after imports           {imports:7.1f} MiB")
    print(f"RSS after building the db   {built:7.1f} MiB")
    print(f"RSS app showing the library {f['ready']:7.1f} MiB")
    print(
        f"RSS after {args.minutes:g} min of radio   {f['after']:7.1f} MiB  ({f['plays']:.0f} previews played in "
        f"{f['seconds']:.0f} s, both backends used)"
    )
    print(
        f"growth over the listening   {growth:+7.1f} MiB  (after / ready {f['after'] / f['ready']:.3f}, "
        f"{growth * 1024 / max(f['plays'], 1):+.1f} KiB per track)"
    )
    first_half = f["both"] - f["warm"]
    steady = f["after"] - f["both"]
    later = f["plays"] - (int(args.minutes * 60 / args.preview_seconds) // 2 + 3)
    print(
        f"  from the first tracks to both backends in use {first_half:+7.1f} MiB (the second backend's vectors and index)"
    )
    print(
        f"  over the last {later:.0f} tracks, both in use   {steady:+7.1f} MiB  ({steady * 1024 / max(later, 1):+.1f} KiB per track)"
    )
    print(f"peak RSS (VmHWM)            {peak:7.1f} MiB")


if __name__ == "__main__":
    main()
