"""A library of tracks with planted embeddings, for the radio's tests and benchmark.

Vectors cluster by artist and then album, so a plain nearest-neighbour radio keeps returning
the seed's artist and album: exactly what the diversity rules are for. Some tracks are second
rips of others (another file, the same song: near-identical vectors) and some are byte-identical
copies (the same content hash under another path and album tag).
"""

from __future__ import annotations

import numpy as np

import backends as backend_registry
from mrs_tui.store import EmbeddingRow, Store

BACKEND = "mfcc"


def build_radio_library(
    store: Store,
    *,
    artists: int = 30,
    albums: int = 2,
    per_album: int = 5,
    rips: int = 5,
    copies: int = 3,
    dim: int = 32,
    seed: int = 0,
    root: str = "/music",
) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    version = backend_registry.embedding_version(BACKEND)
    rows: list[EmbeddingRow] = []
    made: dict[str, list[int]] = {"tracks": [], "rips": [], "copies": []}
    with store.write():
        for a in range(artists):
            centre = rng.normal(size=dim) * 3
            for b in range(albums):
                album_centre = centre + rng.normal(size=dim)
                for t in range(per_album):
                    n = len(made["tracks"])
                    track_id = store.add_track(
                        f"{root}/artist{a}/album{b}/{t}.flac",
                        artist=f"Artist {a}",
                        album=f"Album {a}-{b}",
                        title=f"Song {a}-{b}-{t}",
                        duration=240.0,
                        content_hash=f"hash-{n}",
                    )
                    vector = album_centre + 0.3 * rng.normal(size=dim)
                    rows.append(EmbeddingRow(track_id, BACKEND, version, vector.astype(np.float32)))
                    made["tracks"].append(track_id)
        originals = rows[:]
        for i in range(rips):
            source = originals[i * 7]
            original = store.track(source.track_id)
            track_id = store.add_track(
                f"{root}/rips/{i}.mp3",
                artist=original.artist,
                album="Greatest Hits",
                title=original.title,
                duration=240.0,
                content_hash=f"rip-{i}",
            )
            vector = source.vector + 0.001 * rng.normal(size=dim).astype(np.float32)
            rows.append(EmbeddingRow(track_id, BACKEND, version, vector.astype(np.float32)))
            made["rips"].append(track_id)
        for i in range(copies):
            source = originals[i * 11 + 3]
            original = store.track(source.track_id)
            track_id = store.add_track(
                f"{root}/copies/{i}.flac",
                artist=original.artist,
                album=f"Copy {i}",
                title=original.title,
                duration=240.0,
                content_hash=original.content_hash,
            )
            rows.append(EmbeddingRow(track_id, BACKEND, version, source.vector.copy()))
            made["copies"].append(track_id)
    store.put_embeddings(rows)
    return made
