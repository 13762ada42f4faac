"""A generated library of 1k to 1M tracks for the scale benchmarks: rows, vectors and plays, no audio.

Tracks get tags (artist and album follow the style cluster, as in a real collection), two
backends' vectors at their real dimensions — MusiCNN (200-d) and MFCC (90-d) — drawn from
`VectorDistribution`s fitted to vectors of real audio (the MusiCNN reference clips' per-patch
penultimate layer; the MFCC backend run on 3-s windows of the same clips), and a play history in
listening sessions (a session stays mostly within one style; popular tracks are played more).
Everything is written through the store's bulk paths, in chunks.

A library is built once per (size, plays, seed) and reused: ``ensure_library(folder, n)`` keeps
it at ``folder/library-<n>.db`` with a small JSON beside it saying how it was made.

    python bench/big_library.py --tracks 100000 [--plays 20000] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(REPO))

from mrs_tui.evaluation.vector_model import VectorDistribution, nearest_cosines  # noqa: E402

BACKENDS = {"musicnn": "msd-1", "mfcc": "1"}  # the versions the registry gives them by default
TRACKS_PER_CLUSTER = 60  # about an artist's worth of tracks per style cluster
PLAYS_PER_SESSION = 12
CHUNK = 50_000
GENERATOR_VERSION = 1


def reference_dir() -> Path:
    """The MusiCNN reference outputs of real audio (as the tests find them)."""
    override = os.environ.get("MRS_TUI_REFERENCE_DIR")
    candidates = [Path(override)] if override else []
    candidates.append(REPO.parent / "shared" / "reference")
    for base in candidates:
        for folder in (base / "musicnn", base):
            if (folder / "manifest.json").is_file():
                return folder
    raise SystemExit("the MusiCNN reference clips were not found: set MRS_TUI_REFERENCE_DIR to the folder holding them")


def real_vectors(folder: Path | None = None) -> dict[str, np.ndarray]:
    """Vectors of real audio per backend: MusiCNN per-patch penultimate, MFCC of 3-s windows."""
    folder = folder or reference_dir()
    musicnn = [
        np.load(p)["penultimate"]
        for p in sorted(folder.glob("*__MSD_musicnn.npz"))
        if not p.name.startswith(("intermediates__", "synthetic_"))
    ]
    from backends.mfcc import MfccBackend
    from mrs_tui.audio import decode_file

    mfcc = MfccBackend().load()
    rate = mfcc.sample_rate
    windows = []
    for clip in sorted(folder.glob("*.flac")):
        y = decode_file(clip).at(rate)
        step = 3 * rate
        windows += [y[i : i + step] for i in range(0, len(y) - step + 1, step)]
    return {"musicnn": np.concatenate(musicnn), "mfcc": mfcc.embed(windows)}


def library_path(folder: Path, n_tracks: int) -> Path:
    return folder / f"library-{n_tracks}.db"


def ensure_library(folder: Path, n_tracks: int, n_plays: int = 20_000, seed: int = 0, quiet: bool = False) -> Path:
    """The generated library of `n_tracks` in `folder`, built unless an identical one is there."""
    path = library_path(folder, n_tracks)
    recipe = {"tracks": n_tracks, "plays": n_plays, "seed": seed, "generator": GENERATOR_VERSION}
    note = path.with_suffix(".json")
    if path.exists() and note.exists() and json.loads(note.read_text()).get("recipe") == recipe:
        return path
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), note):
        stale.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stats = build_library(path, n_tracks, n_plays, seed=seed, quiet=quiet)
    note.write_text(json.dumps({"recipe": recipe, "seconds": time.perf_counter() - started, **stats}, indent=1))
    return path


def build_library(path: Path, n_tracks: int, n_plays: int, *, seed: int = 0, quiet: bool = False) -> dict:
    from mrs_tui.store import Store
    from mrs_tui.store.bulk import BulkPlay, BulkTrack, write_bulk_plays, write_bulk_tracks

    say = (lambda *_: None) if quiet else (lambda text: print(f"  [{path.name}] {text}", file=sys.stderr, flush=True))
    real = real_vectors()
    n_clusters = max(1, n_tracks // TRACKS_PER_CLUSTER)
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, n_clusters, n_tracks)
    vectors = {}
    stats: dict = {"clusters": n_clusters}
    for offset, (name, samples) in enumerate(real.items()):
        distribution = VectorDistribution.fit(samples)
        # The same clusters for both backends: two views of the same music.
        matrix, _ = distribution.sample(n_tracks, n_clusters=n_clusters, seed=seed + 1 + offset, clusters=clusters)
        vectors[name] = matrix
        stats[f"{name}_nearest_cosine_real"] = float(np.median(nearest_cosines(samples)))
        stats[f"{name}_nearest_cosine_synthetic"] = float(np.median(nearest_cosines(matrix)))
    say(f"vectors drawn; writing {n_tracks:,} tracks")
    store = Store.open(path)
    try:
        ids: list[int] = []
        for start in range(0, n_tracks, CHUNK):
            stop = min(n_tracks, start + CHUNK)
            rows = [
                BulkTrack(
                    f"/music/Artist {c:05d}/Album {c:05d}-{i % 4}/{i:07d} Track {i}.flac",
                    f"Track {i}",
                    f"Artist {c:05d}",
                    f"style {c % 40}",
                    f"Album {c:05d}-{i % 4}",
                    str(1960 + c % 60),
                    150.0 + (i * 7919) % 240,
                )
                for i, c in zip(range(start, stop), clusters[start:stop].tolist(), strict=True)
            ]
            chunk_vectors = {(name, BACKENDS[name]): matrix[start:stop] for name, matrix in vectors.items()}
            ids += write_bulk_tracks(store, rows, chunk_vectors)
            say(f"{stop:,} tracks")
        write_bulk_plays(store, _plays(rng, clusters, n_clusters, n_plays, BulkPlay), ids, source="app")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    say(f"{n_plays:,} plays written")
    return stats


def _plays(rng: np.random.Generator, clusters: np.ndarray, n_clusters: int, n_plays: int, make) -> list:
    """Sessions of about `PLAYS_PER_SESSION` plays over the last year, mostly within one style."""
    members = np.argsort(clusters, kind="stable")
    bounds = np.searchsorted(clusters[members], np.arange(n_clusters + 1))
    favourite = rng.zipf(1.3, n_plays) % n_clusters  # a listener's favourite styles come back often
    now = time.time()
    plays, session, at = [], 0, now - 365 * 86400.0
    while len(plays) < n_plays:
        style = int(favourite[len(plays)])
        for _ in range(int(rng.integers(4, 2 * PLAYS_PER_SESSION - 3))):
            if len(plays) == n_plays:
                break
            pick = style if rng.random() < 0.8 else int(rng.integers(0, n_clusters))
            first, last = bounds[pick], bounds[pick + 1]
            if last == first:
                continue
            item = int(members[first + min(int(rng.zipf(1.5)) - 1, last - first - 1)])
            event = "skip" if rng.random() < 0.15 else ("like" if rng.random() < 0.05 else "complete")
            plays.append(make(session, item, event, at))
            at += float(rng.uniform(120, 300))
        session += 1
        at += float(rng.uniform(2 * 3600, 3 * 86400.0))
    return plays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--plays", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mrs-tui-scale"))
    args = parser.parse_args()
    started = time.perf_counter()
    path = ensure_library(args.folder, args.tracks, args.plays, args.seed)
    note = json.loads(path.with_suffix(".json").read_text())
    print(f"{path}: {path.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - started:.1f} s")
    print(f"  built in {note['seconds']:.1f} s, {note['clusters']} style clusters")
    for name in BACKENDS:
        real, synthetic = note[f"{name}_nearest_cosine_real"], note[f"{name}_nearest_cosine_synthetic"]
        print(f"  {name}: median cosine to the nearest neighbour, real clips {real:.3f}, generated {synthetic:.3f}")


if __name__ == "__main__":
    main()
