"""Cost against library size: 1k, 100k and 1M generated tracks side by side in one run.

For each size (libraries from `big_library.py`, built once and reused from `--folder`):

- the HNSW graph of the MusiCNN vectors: build time and peak memory (a child process each;
  measured once per library and kept beside it, `--rebuild` measures again);
- per CLI call, fresh processes interleaved across sizes so background load hits all alike:
  `history show --limit 5`, `library --search`, `suggest` (knn);
- in process: knn suggestions for a seed (p50/p95), and after a new play each time;
- in process: the first suggestion after a track is re-analysed (its new vector in its item's
  place, its old graph node retired and the new vector added as a node), against reading the catalogue again from the database (what a
  re-analysis cost before, plus building the graph again: the build time above);
- first paint of the app and the moment its rows are on screen (as bench_startup.py);
- recall@20 of the graph against exact search, for session profiles of generated vectors and for
  real MusiCNN vectors (the reference clips' patches and clip means) as the queries;
- a flat scan's latency by size: where the approximate index starts to pay.

Every figure comes with its ratio to the 1k figure. Children import this checkout.

    python bench/bench_scale.py [--sizes 1000,100000,1000000] [--repeats 5] [--queries 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_startup import MRS  # noqa: E402
from big_library import BACKENDS, ensure_library, real_vectors  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
BACKEND = "musicnn"

PREPARE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from mrs_tui.catalogue import Catalogue
    from mrs_tui.store import Store
    db = Path(sys.argv[1]); backend, version = sys.argv[2], sys.argv[3]
    folder = db.parent / f"{db.stem}-data" / "indexes"
    store = Store.open(db)
    start = time.perf_counter()
    catalogue = Catalogue.load(store, backend, version, folder=folder)
    loaded = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    index = catalogue.search_index(wait=True)
    built = time.perf_counter() - start
    catalogue.save(folder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    graph = catalogue.graph_path(folder)
    print(json.dumps({"items": len(catalogue), "load_s": loaded, "build_s": built, "graph": hasattr(index, "hnsw"),
                      "rss_before_mb": before / 1024, "rss_peak_mb": peak / 1024,
                      "file_mb": graph.stat().st_size / 2**20 if graph.exists() else 0.0}))
    """
)

IN_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine
    from mrs_tui.store import Store
    db, queries = sys.argv[1], int(sys.argv[2])
    engine = Engine(Store.open(db), Settings(backend=sys.argv[3], recommender="knn"))
    n = engine.store.track_count()
    rng = np.random.default_rng(7)
    seeds = [int(s) for s in rng.integers(1, n + 1, 2 * queries)]
    start = time.perf_counter(); engine.suggest(seeds[0], k=20); first = time.perf_counter() - start
    engine.catalogue().search_index(wait=True)
    engine.suggest(seeds[0], k=20)
    plain, after_play, session = [], [], None
    for seed in seeds[:queries]:
        start = time.perf_counter(); engine.suggest(seed, k=20); plain.append(time.perf_counter() - start)
    for seed in seeds[queries:]:
        session = engine.record(seed, "complete").session_id
        start = time.perf_counter(); engine.suggest(seed, k=20); after_play.append(time.perf_counter() - start)
    engine.store.delete_session(session)  # leave the library as it was
    print(json.dumps({"first_s": first, "plain": plain, "after_play": after_play}))
    """
)


REANALYSIS = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from mrs_tui.config import Settings
    from mrs_tui.engine import Engine
    from mrs_tui.store import EmbeddingRow, Store
    db, backend, version, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    engine = Engine(Store.open(db), Settings(backend=backend, recommender="knn"))
    catalogue = engine.catalogue()
    catalogue.search_index(wait=True)
    engine.suggest(int(catalogue.track_ids[0]), k=20)
    rng = np.random.default_rng(11)
    after, graph_kept = [], []
    for _ in range(repeats):
        track = int(catalogue.track_ids[int(rng.integers(0, len(catalogue)))])
        original = catalogue.vector(track).copy()
        # Re-analysed: a new vector near the old one (a re-encoded file, say).
        engine.store.put_embeddings([EmbeddingRow(track, backend, version, original * 1.001)])
        start = time.perf_counter(); engine.suggest(track, k=20); after.append(time.perf_counter() - start)
        graph_kept.append(hasattr(catalogue.search_index(), "hnsw"))
        engine.store.put_embeddings([EmbeddingRow(track, backend, version, original)])  # as it was
        engine.suggest(track, k=20)
    start = time.perf_counter(); catalogue.rebuild(engine.store); reread = time.perf_counter() - start
    print(json.dumps({"after": after, "graph_kept": all(graph_kept), "reread_s": reread}))
    """
)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def child(script: str, *args: str, timeout: float = 3600) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"a benchmark child failed:\n{done.stderr[-2000:]}")
    return done.stdout


def cli_seconds(db: Path, *argv: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mrs_tui", "--db", str(db), *argv], capture_output=True, text=True, env=ENV
    )
    if done.returncode != 0:
        raise SystemExit(f"mrs-tui {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def paint_seconds(db: Path) -> tuple[float, float]:
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", MRS, str(db)], capture_output=True, text=True, env=ENV, check=True, timeout=900
    ).stdout
    marks = {
        p[0]: float(p[1]) - start
        for p in (line.split() for line in out.splitlines())
        if len(p) == 2 and p[0] in ("PAINT", "ROWS")
    }
    return marks["PAINT"], marks["ROWS"]


def prepared(db: Path, rebuild: bool) -> dict:
    note = db.with_suffix(".index.json")
    if note.exists() and not rebuild:
        return json.loads(note.read_text())
    facts = json.loads(child(PREPARE, str(db), BACKEND, BACKENDS[BACKEND]).strip().splitlines()[-1])
    note.write_text(json.dumps(facts))
    return facts


def recall_figures(db: Path, queries: int) -> dict:
    """recall@20 of the saved graph against exact search: generated session profiles, real vectors."""
    import faiss

    from mrs_tui.catalogue import Catalogue
    from mrs_tui.store import Store
    from recommenders.base import l2_normalize

    store = Store.open(db)
    catalogue = Catalogue.load(store, BACKEND, BACKENDS[BACKEND], folder=db.parent / f"{db.stem}-data" / "indexes")
    graph = catalogue.search_index(wait=True)
    if not hasattr(graph, "hnsw"):
        return {}
    unit = catalogue.unit
    rng = np.random.default_rng(3)
    profiles = l2_normalize(np.stack([unit[rng.integers(0, len(unit), 4)].mean(0) for _ in range(queries)]))
    patches = real_vectors()[BACKEND]
    real = l2_normalize(np.concatenate([patches, patches.reshape(-1, 10, patches.shape[1]).mean(1)]))

    def recall(queries: np.ndarray) -> float:
        params = faiss.SearchParametersHNSW()
        params.efSearch = graph.hnsw.efSearch
        _, got = graph.search(queries, 20, params=params)
        exact = np.argsort(-(queries @ unit.T), axis=1)[:, :20]  # numpy: no second copy of the vectors
        return float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(got, exact, strict=True)]))

    # Real vectors as the queries: the reference clips' patches and their means, among the generated ones.
    out = {"profiles": recall(profiles), "real": recall(real)}
    store.close()
    return out


def flat_latency(db: Path) -> list[tuple[int, float, float]]:
    import faiss

    from mrs_tui.catalogue import Catalogue
    from mrs_tui.store import Store

    store = Store.open(db)
    catalogue = Catalogue.load(store, BACKEND, BACKENDS[BACKEND], folder=db.parent / f"{db.stem}-data" / "indexes")
    unit = catalogue.unit
    faiss.omp_set_num_threads(1)  # the scan itself: on a busy machine OpenMP's waiting would dominate
    out = []
    for n in (5_000, 10_000, 20_000, 50_000, 100_000):
        if n > len(unit):
            break
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit[:n])
        times = []
        for q in unit[:60]:
            start = time.perf_counter()
            index.search(q[None], 100)
            times.append(time.perf_counter() - start)
        out.append((n, *percentiles(times)))
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mrs-tui-scale"))
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per CLI command and size")
    parser.add_argument("--queries", type=int, default=60, help="in-process suggestions per size")
    parser.add_argument("--paints", type=int, default=2)
    parser.add_argument("--rebuild", action="store_true", help="measure the graph's build again")
    parser.add_argument(
        "--only", default="cli,inprocess,reanalysis,paint,recall,flat", help="sections to run (comma-separated)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dbs = {n: ensure_library(args.folder, n) for n in sizes}

    print(f"generated libraries: {', '.join(f'{n:,}' for n in sizes)} tracks, two backends, 20,000 plays")
    print("\nHNSW graph of the MusiCNN vectors (built once per library, in a child process)")
    for n, db in dbs.items():
        facts = prepared(db, args.rebuild)
        if facts["graph"]:
            print(
                f"  {n:>9,}: built in {facts['build_s']:7.1f} s, peak memory {facts['rss_peak_mb']:7.0f} MB "
                f"({facts['rss_peak_mb'] - facts['rss_before_mb']:+.0f} MB building and saving the graph), "
                f"file {facts['file_mb']:.0f} MB"
            )
        else:
            print(f"  {n:>9,}: below the threshold: flat exact search")

    only = set(args.only.split(","))
    commands = {
        "history show --limit 5": ["history", "show", "--limit", "5"],
        "library --search": ["library", "--search", "0000777 track"],
        "suggest (knn)": ["suggest", "--seed", "777", "-k", "10", "--backend", BACKEND, "--recommender", "knn"],
    }
    cli: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in commands}
    if "cli" not in only:
        commands = {}
    for argv in commands.values():  # warm the page cache once
        for db in dbs.values():
            cli_seconds(db, *argv)
    for _ in range(args.repeats):
        for name, argv in commands.items():
            for n, db in dbs.items():
                cli[name][n].append(cli_seconds(db, *argv))
    if commands:
        print(f"\nCLI, one fresh process per call ({args.repeats} calls each), p50 / p95 seconds, x the 1k figure")
    for name in commands:
        base = percentiles(cli[name][sizes[0]])[0]
        row = "  ".join(
            f"{n:>9,}: {p50 / 1000:5.2f} / {p95 / 1000:5.2f} ({p50 / base:4.2f}x)"
            for n in sizes
            for p50, p95 in [percentiles(cli[name][n])]
        )
        print(f"  {name:24s} {row}")

    base_plain = base_after = None
    if "inprocess" in only:
        print(f"\nin process: knn suggestion (k=20) for a seed, {args.queries} queries, p50 / p95 ms")
    for n, db in dbs.items() if "inprocess" in only else ():
        result = json.loads(child(IN_PROCESS, str(db), str(args.queries), BACKEND).strip().splitlines()[-1])
        plain, after = percentiles(result["plain"]), percentiles(result["after_play"])
        base_plain, base_after = base_plain or plain[1], base_after or after[1]
        print(
            f"  {n:>9,}: {plain[0]:6.1f} / {plain[1]:6.1f} ({plain[1] / base_plain:4.2f}x)   "
            f"after a new play {after[0]:6.1f} / {after[1]:6.1f} ({after[1] / base_after:4.2f}x)   "
            f"first call (loads the catalogue) {result['first_s']:.2f} s"
        )

    if "reanalysis" in only:
        print("\nin process: the first knn suggestion after a track is re-analysed, p50 / p95 ms (5 tracks)")
    for n, db in dbs.items() if "reanalysis" in only else ():
        result = json.loads(child(REANALYSIS, str(db), BACKEND, BACKENDS[BACKEND], "5").strip().splitlines()[-1])
        p50, p95 = percentiles(result["after"])
        print(
            f"  {n:>9,}: {p50:7.1f} / {p95:7.1f}   searched through: {'the graph' if result['graph_kept'] else 'flat'}   "
            f"reading the catalogue again instead: {result['reread_s']:.2f} s"
        )

    if "paint" in only:
        print(f"\nthe app (median of {args.paints} fresh processes): first paint / first rows on screen, seconds")
        base = None
        for n, db in dbs.items():
            runs = [paint_seconds(db) for _ in range(args.paints)]
            paint, rows = float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))
            base = base or paint
            print(f"  {n:>9,}: {paint:5.2f} ({paint / base:4.2f}x)   rows {rows:6.2f}")

    if "recall" in only:
        print("\nrecall@20 of the graph against exact search (goal >= 0.95)")
    for n, db in dbs.items() if "recall" in only else ():
        figures = recall_figures(db, args.queries)
        if figures:
            print(
                f"  {n:>9,}: session profiles of generated vectors {figures['profiles']:.3f}; "
                f"real MusiCNN vectors (reference clips) as the queries {figures['real']:.3f}"
            )

    if "flat" in only:
        print("\nflat exact search, one query, one thread, k=100, p50 / p95 ms (where the graph starts to pay)")
    for n, p50, p95 in flat_latency(dbs[max(sizes)]) if "flat" in only else ():
        print(f"  {n:>9,}: {p50:6.2f} / {p95:6.2f}")


if __name__ == "__main__":
    main()
