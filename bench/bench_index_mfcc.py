"""Indexing throughput of the `mfcc` backend on 30-s clips: tracks per second, decode vs features.

Generates N tracks of 40 s (so the 30-s excerpt is cut from the middle, as for real music) in
FLAC, Ogg Vorbis and MP3 at 44.1 kHz stereo-equivalent rates, scans them, and runs the real
indexer. Decode time is measured inside the indexer's prefetch thread, feature time in the
backend; with the prefetch they overlap, so wall time is less than their sum.

    python bench/bench_index_mfcc.py [--tracks 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import backends
    from mrs_tui.demo import STYLES, synthesize, write_track
    from mrs_tui.indexing import Indexer
    from mrs_tui.library import scan
    from mrs_tui.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "music"
        formats = (".flac", ".ogg", ".mp3")
        for i in range(args.tracks):
            style = STYLES[i % len(STYLES)]
            write_track(root / f"{i:04d}{formats[i % 3]}", synthesize(style, 40.0, sr=44100, seed=i), 44100)
        store = Store.open(Path(tmp) / "lib.db")
        scan(store, root)
        backend = backends.load_backend("mfcc")
        backend.embed([synthesize("piano", 30.0, sr=22050)])  # warm librosa's JIT caches, as a long run would be
        started = time.perf_counter()
        report = Indexer(store, [backend], batch_size=8).run()
        wall = time.perf_counter() - started
    n = report.embedded["mfcc"]
    print(f"mfcc indexing of {n} tracks (30-s excerpts of 40-s files, 44.1 kHz, FLAC/Vorbis/MP3)")
    print(f"  wall time            {wall:7.2f} s   {n / wall:6.2f} tracks/s")
    print(f"  decode + resample    {report.decode_seconds:7.2f} s   {report.decode_seconds / n * 1000:6.1f} ms/track")
    print(
        f"  features (librosa)   {report.embed_seconds['mfcc']:7.2f} s   {report.embed_seconds['mfcc'] / n * 1000:6.1f} ms/track"
    )


if __name__ == "__main__":
    main()
