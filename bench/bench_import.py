"""Importing listening exports against a 10k-track library: seconds and peak memory.

    python bench/bench_import.py [--tracks 10000] [--lastfm 100000] [--spotify 30000]

Each import runs in a fresh process (so peak RSS is its own): a 100k-row headerless Last.fm CSV
and a 30k-row Spotify extended streaming history, 1 row in 10 of tracks the library lacks.
Reported: rows per second for the dry run (read + match) and for writing, peak RSS, and the
ratio of import time to the time to merely read the file (the parsing baseline).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrs_tui.store import Store  # noqa: E402


def build_library(db: Path, n: int) -> list[tuple[str, str, str]]:
    store = Store.open(db)
    rows = []
    with store.write():
        for i in range(n):
            artist, album, title = f"Artist {i % 700}", f"Album {i % 1500}", f"Song number {i}"
            store.add_track(f"/music/{i}.flac", artist=artist, album=album, title=title, duration=200.0 + i % 90)
            rows.append((artist, album, title))
    store.close()
    return rows


def write_lastfm(path: Path, library, rows: int, rng) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for i in range(rows):
            artist, album, title = library[rng.integers(len(library))]
            if rng.random() < 0.1:
                artist, title = f"Stranger {i % 997}", f"Unknown {i}"
            stamp = time.strftime("%d %b %Y %H:%M", time.gmtime(1_500_000_000 + 240 * i))
            writer.writerow([artist, album, title, stamp])


def write_spotify(path: Path, library, rows: int, rng) -> None:
    items = []
    for i in range(rows):
        artist, album, title = library[rng.integers(len(library))]
        if rng.random() < 0.1:
            artist, title = f"Stranger {i % 997}", f"Unknown {i}"
        ms = int(rng.integers(5_000, 300_000))
        items.append(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + 300 * i)),
                "platform": "linux",
                "ms_played": ms,
                "conn_country": "GB",
                "master_metadata_track_name": title,
                "master_metadata_album_artist_name": artist,
                "master_metadata_album_album_name": album,
                "spotify_track_uri": f"spotify:track:{i:022d}",
                "episode_name": None,
                "reason_start": "trackdone",
                "reason_end": "trackdone" if ms > 60_000 else "fwdbtn",
                "shuffle": False,
                "skipped": ms < 30_000,
            }
        )
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")


CHILD = """
import json, resource, sys, time
from mrs_tui.imports import apply_import, plan_import
from mrs_tui.imports.formats import read_export
from mrs_tui.store import Store
db, export = sys.argv[1], sys.argv[2]
t = time.perf_counter(); read_export(export); read_s = time.perf_counter() - t
store = Store.open(db)
t = time.perf_counter(); plan = plan_import(store, [export]); plan_s = time.perf_counter() - t
t = time.perf_counter(); result = apply_import(store, plan); write_s = time.perf_counter() - t
t = time.perf_counter(); again = plan_import(store, [export]); again_s = time.perf_counter() - t
print(json.dumps({"rows": plan.total, "matched": plan.matched, "written": result.plays, "skips": result.skips,
                  "read_s": read_s, "plan_s": plan_s, "write_s": write_s, "again_s": again_s,
                  "again_new": again.matched, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--lastfm", type=int, default=100_000)
    parser.add_argument("--spotify", type=int, default=30_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        library = build_library(folder / "template.db", args.tracks)
        exports = [("Last.fm CSV", folder / "scrobbles.csv", write_lastfm, args.lastfm)]
        exports.append(
            ("Spotify extended", folder / "Streaming_History_Audio_2020_0.json", write_spotify, args.spotify)
        )
        for label, path, writer, rows in exports:
            writer(path, library, rows, rng)
            db = folder / f"{path.stem}.db"
            db.write_bytes((folder / "template.db").read_bytes())
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(db), str(path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": ""},
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            total = r["plan_s"] + r["write_s"]
            print(
                f"{label:17s} {r['rows']:7d} rows vs {args.tracks} tracks: dry run {r['plan_s']:.2f} s "
                f"({r['rows'] / r['plan_s']:,.0f} rows/s), write {r['write_s']:.2f} s, total {total:.2f} s, "
                f"re-import check {r['again_s']:.2f} s ({r['again_new']} new), peak RSS {r['peak_mb']:.0f} MiB; "
                f"{r['matched']} matched, {r['skips']} skips; import/read-only ratio {total / r['read_s']:.1f}"
            )


if __name__ == "__main__":
    main()
