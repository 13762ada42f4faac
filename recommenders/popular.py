"""Popularity baseline: items ranked by the number of contexts that played them."""

from __future__ import annotations

import threading

import numpy as np

from recommenders.base import Interactions, ProgressCallback, Query, Recommender


class PopularRecommender(Recommender):
    name = "popular"
    recommends_for_cold = False  # every cold item has count 0: the cold ranking is arbitrary
    uses_audio = False

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.counts = np.zeros(0, np.float32)

    def _fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.counts = interactions.item_counts().astype(np.float32)
        if progress:
            progress(1, 1, "counted plays")

    def score(self, query: Query) -> np.ndarray:
        return self.counts

    def score_batch(self, queries):
        return np.broadcast_to(self.counts, (len(queries), self.n_items))

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        self.counts = np.concatenate([self.counts, np.zeros(len(new_vectors), np.float32)])

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"]
