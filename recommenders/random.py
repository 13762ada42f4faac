"""Random baseline: the floor every recommender is measured against, hot and cold.

Scores are uniform draws, but not fresh ones on every call: the generator is seeded from
the model's seed and the query's content (context, history, seed), so the same question
gets the same answer — a rerun of an evaluation gives identical figures, and a saved and
reloaded model ranks exactly as before — while different queries get independent rankings.
"""

from __future__ import annotations

import threading

import numpy as np

from recommenders.base import Interactions, ProgressCallback, Query, Recommender


class RandomRecommender(Recommender):
    name = "random"
    uses_audio = False
    # It does rank cold items, at random: that is exactly the floor cold-start evaluation needs.
    recommends_for_cold = True

    def _fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        if progress:
            progress(1, 1, "nothing to learn")

    def score(self, query: Query) -> np.ndarray:
        return self.query_generator(query).random(self.n_items, dtype=np.float32)

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        """Nothing per item to grow: the scores already cover `n_items`."""
