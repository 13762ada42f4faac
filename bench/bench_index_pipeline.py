"""Indexing throughput (tracks/s) with and without the decode pipeline, and the thread split.

The real indexer on generated 40-s tracks (44.1 kHz FLAC, Ogg Vorbis and MP3, so the 30-s
excerpt is cut from the middle and resampled as for real music), for each backend named:

- ``one-ahead``: the indexer as it was before the pipeline: one decoder thread, one track
  decoded ahead of analysis (``prefetch=1``);
- ``pipeline``: a batch plus one track decoded ahead (the default);
- ``pipeline+torch1``: the same with torch limited to one thread, leaving a core to decoding;
- ``pipeline+2decoders``: two decoder threads.

Every configuration runs on a fresh database of the same files, and the configurations
alternate (A, B, C, D, A, B, C, D...), so a busy machine slows each alike; the best of the
rounds is reported, with its ratio to one-ahead from the same round set. Backends with weights
use a random checkpoint at real size (speed does not depend on the values): ``musicnn``, and
``music2vec`` as the smallest heavy backend (few tracks: a few seconds each).

    python bench/bench_index_pipeline.py                              # mfcc, musicnn, music2vec
    python bench/bench_index_pipeline.py --backends mfcc --tracks 32 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = {
    "one-ahead": {"prefetch": 1},
    "pipeline": {},
    "pipeline+torch1": {"torch_threads": 1},
    "pipeline+2decoders": {"decode_workers": 2},
}
DEFAULT_TRACKS = {"mfcc": 24, "musicnn": 16, "music2vec": 4}


def make_tracks(root: Path, count: int) -> None:
    from mrs_tui.demo import STYLES, synthesize, write_track

    formats = (".flac", ".ogg", ".mp3")
    for i in range(count):
        path = root / f"{i:04d}{formats[i % 3]}"
        if not path.exists():
            write_track(path, synthesize(STYLES[i % len(STYLES)], 40.0, sr=44100, seed=i), 44100)


def load(name: str, tmp: Path):
    import backends

    spec = backends.get_spec(name)
    if not spec.needs_weights:
        return backends.load_backend(name)
    from backends.testing import write_random_checkpoint

    folder = write_random_checkpoint(name, tmp / f"weights-{name}", size="real", seed=0)
    return backends.load_backend(name, folder)


def run_once(backend, music: Path, db: Path, config: dict, count: int) -> tuple[float, float, int]:
    from mrs_tui.indexing import Indexer
    from mrs_tui.library import scan
    from mrs_tui.store import Store

    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    store = Store.open(db)
    scan(store, music)
    started = time.perf_counter()
    report = Indexer(store, [backend], batch_size=8, **config).run()
    wall = time.perf_counter() - started
    store.close()
    return wall, report.decode_seconds, report.embedded[backend.name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="mfcc,musicnn,music2vec")
    parser.add_argument("--tracks", type=int, default=None, help="tracks per run (default: per backend)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads outside 'torch 1'")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            count = args.tracks or DEFAULT_TRACKS.get(name, 8)
            music = tmp / "music" / name
            make_tracks(music, count)
            backend = load(name, tmp)
            run_once(backend, music, tmp / "warm.db", {}, count)  # warm caches (librosa JIT, oneDNN kernels)
            walls: dict[str, list[float]] = {c: [] for c in configs}
            decode: dict[str, float] = {}
            for _ in range(args.rounds):
                for config in configs:
                    wall, decode_s, done = run_once(backend, music, tmp / "bench.db", CONFIGS[config], count)
                    walls[config].append(wall)
                    decode[config] = decode_s
                    print(f"    {name} {config}: {done / wall:.2f} tracks/s", file=sys.stderr, flush=True)
            base = min(walls.get("one-ahead", [float("nan")]))
            lines.append(f"\n{name}: {count} tracks of 40 s (30-s excerpts, 44.1 kHz), best of {args.rounds}")
            lines.append(f"  {'configuration':22s} {'tracks/s':>9s} {'vs one-ahead':>13s} {'decode ms/track':>16s}")
            for config in configs:
                best = min(walls[config])
                lines.append(
                    f"  {config:22s} {count / best:9.2f} {base / best:12.2f}x {decode[config] / count * 1000:16.0f}"
                )
    print("\n".join(lines))
    print("\ndecode ms/track: time inside the decoder threads (overlaps analysis in every configuration).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
