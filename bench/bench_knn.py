"""KNN suggestion latency at 10k and 100k tracks (random 200-d vectors), p50/p95 per query.

Measures the recommender call the app makes per suggestion (profile = mean of a few played
vectors, exclusions, FAISS cosine search), next to a plain numpy matrix-vector product over
the same catalogue as the baseline. Goal: p95 under 20 ms at 100k.

    python bench/bench_knn.py [--dim 200] [--queries 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    from recommenders import Interactions, Query
    from recommenders.knn import KNNRecommender

    rng = np.random.default_rng(0)
    print(f"KNN latency per suggestion list (k=20, {args.dim}-d, {args.threads} threads, {args.queries} queries)")
    print(f"{'items':>8s} {'fit':>8s} {'p50 ms':>8s} {'p95 ms':>8s}   {'numpy p50':>9s} {'numpy p95':>9s}")
    for n in (10_000, 100_000):
        vectors = rng.normal(size=(n, args.dim)).astype(np.float32)
        started = time.perf_counter()
        knn = KNNRecommender().fit(Interactions([], [], [], n_contexts=0, n_items=n), vectors)
        knn.index  # noqa: B018 - build the FAISS index outside the timed queries
        fit = time.perf_counter() - started
        queries = [
            Query(
                history=rng.integers(0, n, 5).tolist(),
                seed=int(rng.integers(0, n)),
                exclude=set(rng.integers(0, n, 50).tolist()),
            )
            for _ in range(args.queries)
        ]
        knn.recommend(queries[0], 20)
        faiss_times, numpy_times = [], []
        for q in queries:
            t = time.perf_counter()
            knn.recommend(q, 20)
            faiss_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            scores = knn.unit @ knn.profile(q)
            scores[list(q.exclude)] = -np.inf
            np.argpartition(-scores, 20)[:20]
            numpy_times.append(time.perf_counter() - t)
        p50, p95 = percentiles(faiss_times)
        n50, n95 = percentiles(numpy_times)
        print(f"{n:8d} {fit:7.2f}s {p50:8.2f} {p95:8.2f}   {n50:9.2f} {n95:9.2f}")


if __name__ == "__main__":
    main()
