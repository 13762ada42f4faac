"""KNN on audio vectors, as in the paper.

The profile of a context is the mean of the *raw* vectors of the items it played (plus the
seed); profile and items are L2-normalised and ranked by inner product — cosine similarity —
in a FAISS flat index, with pool and exclusions applied inside the search through an ID
selector so that excluding thousands of played tracks costs nothing extra.

Option ``zscore=True`` standardises every vector dimension over the catalogue before the
cosine (off by default, as in the paper): backends whose dimensions have very different
scales (the handcrafted ``mfcc`` features) can gain from it; `mrs-tui eval` shows whether.

The paper's code (``src/knn.py``, ``Darel13712/adopting-pretrained-audio``) is reproduced
exactly, so ``paper_compat`` changes nothing here. One detail of it: lines 22-26 average a
user's rows of the embedding matrix *before* re-indexing the matrix to the split's items, so
the profile reads the rows of the encoded item ids in the raw matrix; that is the same thing
when the track ids are the matrix's row numbers (as in the published files) and a bug
otherwise. We always average the items' own vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recommenders.base import Interactions, Params, ProgressCallback, Query, Recommender, l2_normalize


@dataclass(frozen=True)
class KNNParams(Params):
    zscore: bool = False  # standardise every dimension over the catalogue before the cosine


class KNNRecommender(Recommender):
    name = "knn"
    Params = KNNParams

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.vectors = np.zeros((0, 0), np.float32)  # raw (or z-scored) vectors, for profiles
        self.unit = np.zeros((0, 0), np.float32)  # L2-normalised, what the index holds
        self._contexts: Interactions | Callable[[], Interactions] | list[np.ndarray] = []
        self._index = None

    def _fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        vectors = item_vectors
        if self.zscore:
            mean = vectors.mean(axis=0)
            std = vectors.std(axis=0)
            vectors = (vectors - mean) / np.where(std > 1e-8, std, 1.0)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.unit = l2_normalize(self.vectors)
        self._contexts = interactions
        self._index = None
        if progress:
            progress(1, 1, "built the vector index")

    @property
    def context_items(self) -> list[np.ndarray]:
        """Per training context, its distinct items (the profile of a query by context)."""
        if callable(self._contexts):
            self._contexts = self._contexts()
        if isinstance(self._contexts, Interactions):  # worked out on first use: serving never asks
            self._contexts = [np.unique(s) for s in self._contexts.sequences()]
        return self._contexts

    def refit_history(self, hot_mask: np.ndarray, interactions: Callable[[], Interactions]) -> KNNRecommender:
        """The same items, vectors and index under a grown history: only the hot items and the
        contexts depend on it. `hot_mask` is what `interactions().hot_mask()` would give; the
        contexts are read from `interactions()` only if a query asks by context (serving never does).
        """
        if hot_mask.shape != (self.n_items,):
            raise ValueError("the hot mask does not cover this model's items")
        self.hot_mask = hot_mask
        self._contexts = interactions
        return self

    def use_unit(self, unit: np.ndarray) -> None:
        """Take the catalogue's normalised vectors instead of a copy of our own (same rows)."""
        if unit.shape != self.unit.shape:
            raise ValueError("these normalised vectors are not this model's items")
        self.unit = unit

    @property
    def index(self):
        if self._index is None:
            import faiss

            index = faiss.IndexFlatIP(self.unit.shape[1])
            index.add(self.unit)
            self._index = index
        return self._index

    def use_index(self, index) -> None:
        """Search a prebuilt FAISS index over the same normalised vectors (the app's catalogue)."""
        if index.ntotal != self.n_items or index.d != self.unit.shape[1]:
            raise ValueError("the index does not hold this model's item vectors")
        self._index = index

    def profile(self, query: Query) -> np.ndarray | None:
        items = query.items()
        if not items and query.context is not None and query.context < len(self.context_items):
            items = list(self.context_items[query.context])
        if not items:
            return None
        return l2_normalize(self.vectors[np.asarray(items, dtype=np.int64)].mean(axis=0))

    def score(self, query: Query) -> np.ndarray:
        profile = self.profile(query)
        if profile is None:
            return np.zeros(self.n_items, np.float32)
        return self.unit @ profile

    def recommend(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        profile = self.profile(query)
        mask = self.candidate_mask(query)
        if profile is None:
            return self._top_k(np.zeros(self.n_items, np.float32), mask, k, self.query_generator(query))
        return self._search(profile[None, :], mask, k)[0]

    def recommend_batch(self, queries, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Queries with the same candidates share one search (one pass over a flat index)."""
        profiles = [self.profile(q) for q in queries]
        shared = len({(q.pool, frozenset(int(i) for i in q.exclude)) for q in queries}) == 1
        if not queries or not shared or any(p is None for p in profiles):
            return [self.recommend(q, k) for q in queries]
        return self._search(np.stack(profiles), self.candidate_mask(queries[0]), k)

    def _search(self, profiles: np.ndarray, mask: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        n_candidates = int(mask.sum())
        k = min(k, n_candidates)
        if k <= 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in profiles]
        import faiss

        params = None
        if n_candidates < self.n_items:
            bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(bitmap))
            params = faiss.SearchParameters(sel=selector)
        scores, ids = self.index.search(np.ascontiguousarray(profiles, np.float32), k, params=params)
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            out.append((row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return out

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.zscore:
            raise NotImplementedError("knn with zscore=True standardised its vectors at fit time: refit it")
        self.vectors = np.ascontiguousarray(np.concatenate([self.vectors, new_vectors]), dtype=np.float32)
        self.unit = l2_normalize(self.vectors)
        self._index = None

    def _state(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(c) for c in self.context_items], np.int64)
        flat = np.concatenate(self.context_items) if self.context_items else np.zeros(0, np.int64)
        return {"vectors": self.vectors, "context_lengths": lengths, "context_flat": flat}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.vectors = arrays["vectors"].astype(np.float32)
        self.unit = l2_normalize(self.vectors)
        bounds = np.concatenate([[0], np.cumsum(arrays["context_lengths"])])
        flat = arrays["context_flat"]
        self._contexts = [flat[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        self._index = None
