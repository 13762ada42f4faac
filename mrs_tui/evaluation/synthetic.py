"""Generated play logs with planted structure, for tests and benchmarks.

Tracks fall into style clusters; a track's vector is its cluster's centre plus noise (one
matrix per "backend", with its own dimension and noise level, so a better backend exists).
Listeners prefer a few clusters and play popular tracks more often (Zipf within a cluster);
plays come in sessions of a few tracks from one cluster, spread over `days`. New tracks keep
being released, so the last month holds tracks absent from training (cold items).

A recommender that uses the vectors should beat `random` on hot and cold targets; `popular`
should do well on hot and no better than chance on cold. Tests rely on exactly that.
"""

from __future__ import annotations

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
    disliked: np.ndarray | None = None  # each user's skipped cluster (`skip_rate` > 0), else None


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
    skip_rate: float = 0.0,
    skipped_sounds_like: float = 0.0,
    seed: int = 0,
) -> SyntheticData:
    """A planted log (see the module docstring).

    With `skip_rate` > 0 every user also has one disliked cluster (never one of their tastes):
    after each play, with that probability, a popular track of it comes up and is skipped
    (`log.negatives`). Its tracks are still played now and then in off-taste sessions, so
    some of them are hot. The skips use their own random stream: the plays are the same as
    without them. `skipped_sounds_like` (0..1) moves the first user's disliked cluster that
    share of the way towards their first taste in every backend: a style that sounds like the
    one they love and that they skip, which audio alone cannot tell apart.
    """
    rng = np.random.default_rng(seed)
    backends = backends or {"good": (32, 0.3), "poor": (16, 2.0)}
    clusters = rng.integers(0, n_clusters, n_items)
    # The last `new_item_share` of items are released during the last month: cold at test time.
    release = np.zeros(n_items)
    n_new = int(round(new_item_share * n_items))
    if n_new:
        release[-n_new:] = rng.uniform(days - 30, days - 1, n_new)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    vectors, centres = {}, {}
    for offset, (name, (dim, noise)) in enumerate(backends.items()):
        local = np.random.default_rng(seed + 1000 + offset)
        centres[name] = local.normal(0.0, 1.0, (n_clusters, dim))
        vectors[name] = (centres[name][clusters] + local.normal(0.0, noise, (n_items, dim))).astype(np.float32)
    tastes = [rng.choice(n_clusters, size=2, replace=False) for _ in range(n_users)]
    skip_rng = np.random.default_rng(seed + 7919)
    disliked = None
    if skip_rate > 0:
        disliked = np.array([skip_rng.choice(np.setdiff1d(np.arange(n_clusters), t)) for t in tastes])
        if skipped_sounds_like > 0:
            near, loved = int(disliked[0]), int(tastes[0][0])
            for name, matrix in vectors.items():
                shift = skipped_sounds_like * (centres[name][loved] - centres[name][near])
                matrix[clusters == near] += shift.astype(np.float32)
    skipped: tuple[list, list, list, list] = ([], [], [], [])
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
            if disliked is not None and skip_rng.random() < skip_rate:
                pool_skip = np.flatnonzero((clusters == disliked[user]) & (release <= day))
                if len(pool_skip):
                    weights_skip = popularity[pool_skip] / popularity[pool_skip].sum()
                    item = str(int(skip_rng.choice(pool_skip, p=weights_skip)))
                    for column, value in zip(skipped, (user, item, at - 60.0, session), strict=True):
                        column.append(value)
        session += 1
    log = PlayLog(
        np.asarray(users, np.int64),
        np.asarray(items, dtype=object),
        np.asarray(stamps),
        np.ones(len(items), np.float32),
        sessions=np.asarray(sessions, np.int64),
    )
    if disliked is not None:
        log.negatives = PlayLog(
            np.asarray(skipped[0], np.int64),
            np.asarray(skipped[1], dtype=object),
            np.asarray(skipped[2], np.float64),
            np.ones(len(skipped[1]), np.float32),
            sessions=np.asarray(skipped[3], np.int64),
        )
    keys = np.asarray([str(i) for i in range(n_items)], dtype=object)
    return SyntheticData(log, keys, clusters, vectors, release, disliked)


def write_history(store, data: SyntheticData, *, versions: dict[str, str] | None = None) -> dict[str, int]:
    """Store `data` as one listener's library and history: tracks, embeddings, sessions, plays.

    `versions` gives the embedding version per backend name (default "1"). Returns the track id
    of each item key. Bulk inserts: a 50k-play history is written in about a second.
    """
    from mrs_tui.store.bulk import BulkPlay, BulkTrack, write_bulk_history

    versions = versions or {}
    tracks = [
        BulkTrack(
            f"/synthetic/style{int(cluster)}/track{i}.flac",
            f"track {i}",
            f"artist {int(cluster)}",
            f"style {int(cluster)}",
        )
        for i, cluster in enumerate(data.clusters)
    ]
    log = data.log
    rows = [(int(log.sessions[r]), int(log.items[r]), "complete", float(log.timestamps[r])) for r in range(len(log))]
    if log.negatives is not None:
        skips = log.negatives
        rows += [
            (int(skips.sessions[r]), int(skips.items[r]), "skip", float(skips.timestamps[r])) for r in range(len(skips))
        ]
    plays = [BulkPlay(*row) for row in sorted(rows, key=lambda row: row[3])]
    vectors = {(name, versions.get(name, "1")): matrix for name, matrix in data.vectors.items()}
    ids = write_bulk_history(store, tracks, vectors, plays)
    return {str(k): ids[i] for i, k in enumerate(data.item_keys)}
