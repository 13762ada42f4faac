"""Generated play logs with planted structure, for tests and benchmarks.

Tracks fall into style clusters; a track's vector is its cluster's centre plus noise (one
matrix per "backend", with its own dimension and noise level, so a better backend exists).
Listeners prefer a few clusters and play popular tracks more often (Zipf within a cluster);
plays come in sessions of a few tracks from one cluster, spread over `days`. New tracks keep
being released, so the last month holds tracks never played before (cold items).

A recommender that uses the vectors should beat `random` on hot and cold targets; `popular`
should do well on hot and no better than chance on cold. Tests rely on exactly that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mrs_tui.evaluation.datasets import PlayLog

DAY = 86400.0


@dataclass
class SyntheticData:
    log: PlayLog  # users, items (str keys), timestamps, counts; sessions set
    item_keys: np.ndarray  # str keys "0".."n-1"
    clusters: np.ndarray  # cluster of each item
    vectors: dict[str, np.ndarray]  # backend name -> (n_items, dim) float32
    release: np.ndarray  # first day each item can be played


def generate(
    *,
    n_users: int = 40,
    n_items: int = 300,
    n_plays: int = 4000,
    n_clusters: int = 8,
    days: int = 400,
    start: float = 1_700_000_000.0,
    backends: dict[str, tuple[int, float]] | None = None,  # name -> (dim, noise)
    session_length: tuple[int, int] = (3, 9),
    new_item_share: float = 0.1,
    seed: int = 0,
) -> SyntheticData:
    rng = np.random.default_rng(seed)
    backends = backends or {"good": (32, 0.3), "poor": (16, 2.0)}
    clusters = rng.integers(0, n_clusters, n_items)
    # The last `new_item_share` of items are released during the last month: cold at test time.
    release = np.zeros(n_items)
    n_new = int(round(new_item_share * n_items))
    if n_new:
        release[-n_new:] = rng.uniform(days - 30, days - 1, n_new)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    vectors = {}
    for offset, (name, (dim, noise)) in enumerate(backends.items()):
        local = np.random.default_rng(seed + 1000 + offset)
        centres = local.normal(0.0, 1.0, (n_clusters, dim))
        vectors[name] = (centres[clusters] + local.normal(0.0, noise, (n_items, dim))).astype(np.float32)
    tastes = [rng.choice(n_clusters, size=2, replace=False) for _ in range(n_users)]
    users, items, stamps, sessions = [], [], [], []
    session = 0
    while len(items) < n_plays:
        user = int(rng.integers(n_users))
        day = float(rng.uniform(0, days))
        cluster = int(rng.choice(tastes[user])) if rng.random() < 0.85 else int(rng.integers(n_clusters))
        pool = np.flatnonzero((clusters == cluster) & (release <= day))
        if len(pool) == 0:
            continue
        weights = popularity[pool] / popularity[pool].sum()
        length = int(rng.integers(session_length[0], session_length[1] + 1))
        chosen = rng.choice(pool, size=min(length, len(pool)), replace=False, p=weights)
        at = start + day * DAY
        for item in chosen:
            users.append(user)
            items.append(str(int(item)))
            stamps.append(at)
            sessions.append(session)
            at += float(rng.uniform(120, 300))
        session += 1
    log = PlayLog(
        np.asarray(users, np.int64),
        np.asarray(items, dtype=object),
        np.asarray(stamps),
        np.ones(len(items), np.float32),
        sessions=np.asarray(sessions, np.int64),
    )
    keys = np.asarray([str(i) for i in range(n_items)], dtype=object)
    return SyntheticData(log, keys, clusters, vectors, release)


def write_history(store, data: SyntheticData, *, versions: dict[str, str] | None = None) -> dict[str, int]:
    """Store `data` as one listener's library and history: tracks, embeddings, sessions, plays.

    `versions` gives the embedding version per backend name (default "1"). Returns the track id
    of each item key. Bulk inserts: a 50k-play history is written in about a second.
    """
    from mrs_tui.store import vector_to_blob

    now = time.time()
    n_items = len(data.item_keys)
    versions = versions or {}
    with store.write() as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) FROM tracks").fetchone()[0] + 1
        conn.executemany(
            "INSERT INTO tracks (id, path, title, artist, genre, status, added_at, updated_at) VALUES (?, ?, ?, ?, ?, 'ok', ?, ?)",
            [
                (
                    first + i,
                    f"/synthetic/style{int(data.clusters[i])}/track{i}.flac",
                    f"track {i}",
                    f"artist {int(data.clusters[i])}",
                    f"style {int(data.clusters[i])}",
                    now,
                    now,
                )
                for i in range(n_items)
            ],
        )
        for name, matrix in data.vectors.items():
            version = versions.get(name, "1")
            conn.executemany(
                "INSERT INTO embeddings (track_id, backend, version, dim, vector, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(first + i, name, version, matrix.shape[1], vector_to_blob(matrix[i]), now) for i in range(n_items)],
            )
        log = data.log
        bounds: dict[int, list[float]] = {}  # session -> [first play, last play]
        for session, at in zip(log.sessions.tolist(), log.timestamps.tolist(), strict=True):
            span = bounds.setdefault(session, [at, at])
            span[0], span[1] = min(span[0], at), max(span[1], at)
        first_session = conn.execute("SELECT coalesce(max(id), 0) FROM sessions").fetchone()[0] + 1
        by_start = sorted(bounds, key=lambda session: bounds[session][0])
        session_ids = {session: first_session + n for n, session in enumerate(by_start)}
        conn.executemany(
            "INSERT INTO sessions (id, started_at, last_at, source) VALUES (?, ?, ?, 'synthetic')",
            [(session_ids[s], begin, end) for s, (begin, end) in bounds.items()],
        )
        plays = [
            (session_ids[int(log.sessions[r])], first + int(log.items[r]), "complete", float(log.timestamps[r]))
            for r in np.argsort(log.timestamps, kind="stable")
        ]
        conn.executemany("INSERT INTO plays (session_id, track_id, event, at) VALUES (?, ?, ?, ?)", plays)
    return {str(k): first + i for i, k in enumerate(data.item_keys)}
