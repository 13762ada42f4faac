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

from recommenders.base import Interactions, Params, ProgressCallback, Query, Recommender, l2_normalize, top_k_of

# Through an HNSW graph, a pool of at most this many candidates is ranked exactly over its own
# vectors: a filtered graph walk finds few of them, a scan of this many costs about a millisecond.
EXACT_POOL = 20_000
MAX_EF_SEARCH = 4096


@dataclass(frozen=True)
class KNNParams(Params):
    zscore: bool = False  # standardise every dimension over the catalogue before the cosine


class KNNRecommender(Recommender):
    name = "knn"
    Params = KNNParams

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.vectors = np.zeros((0, 0), np.float32)  # raw (or z-scored) vectors, for profiles
        self._unit: np.ndarray | None = np.zeros((0, 0), np.float32)  # L2-normalised, what the index holds
        self._contexts: Interactions | Callable[[], Interactions] | list[np.ndarray] = []
        self._index = None
        self._index_source: Callable[[], object] | None = None
        self._unit_source: Callable[[], np.ndarray] | None = None

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
        self._unit = None  # normalised on first use, unless the catalogue's are handed over first
        self._unit_source = None
        self._contexts = interactions
        self._index = None
        self._index_source = None
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

    @property
    def unit(self) -> np.ndarray:
        unit = self._unit
        if unit is None:
            if self._unit_source is None:
                unit = l2_normalize(self.vectors)
            else:
                unit = self._unit_source()
                if unit.shape != self.vectors.shape:
                    raise ValueError("these normalised vectors are not this model's items")
            self._unit = unit
        return unit

    def use_unit_source(self, source: Callable[[], np.ndarray]) -> None:
        """Take the catalogue's normalised vectors instead of a copy of our own (same rows), asking
        `source` for them when a search first needs them all: through a graph, most never do (at
        a million items they take a second to compute)."""
        self._unit, self._unit_source = None, source

    def _unit_rows(self, rows: np.ndarray) -> np.ndarray:
        """Normalised vectors of these items, without normalising all of them first."""
        if self._unit is not None:
            return self._unit[rows]
        return l2_normalize(self.vectors[rows])  # row by row: the same values as unit[rows]

    @property
    def index(self):
        if self._index_source is not None:
            index = self._index_source()
            if index.ntotal == self.n_items and index.d == self.vectors.shape[1]:
                return index
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

    def use_index_source(self, source: Callable[[], object]) -> None:
        """Ask `source` for the index at every search (the catalogue's: flat, or its HNSW graph once
        built); the model's own flat index answers while the source holds other items."""
        self._index_source = source

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
        if profile is None:
            return self._top_k(
                np.zeros(self.n_items, np.float32), self.candidate_mask(query), k, self.query_generator(query)
            )
        return self._search(profile[None, :], query, k)[0]

    def recommend_batch(self, queries, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Queries with the same candidates share one candidate set and selector."""
        profiles = [self.profile(q) for q in queries]
        shared = len({(q.pool, frozenset(int(i) for i in q.exclude)) for q in queries}) == 1
        if not queries or not shared or any(p is None for p in profiles):
            return [self.recommend(q, k) for q in queries]
        return self._search(np.stack(profiles), queries[0], k)

    def _search(self, profiles: np.ndarray, query: Query, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k among the query's candidates for each profile, through the index.

        A flat index is exact. Through an HNSW graph the candidates stay exact in meaning: the
        selector keeps every other item out of the walk, a small pool (the hot tracks, say) is
        ranked exactly over its own vectors instead, and a row the filtered walk left short of k is
        refilled exactly. The whole catalogue less a few exclusions costs the exclusions, not a
        mask over every item.
        """
        import faiss

        index = self.index
        graph = hasattr(index, "hnsw")
        mask, excluded = None, np.zeros(0, np.int64)
        if query.pool == "all" and graph:
            excluded = np.unique(np.fromiter((int(i) for i in query.exclude), np.int64, len(query.exclude)))
            excluded = excluded[(excluded >= 0) & (excluded < self.n_items)]
            n_candidates = self.n_items - len(excluded)
        else:
            mask = self.candidate_mask(query)
            n_candidates = int(mask.sum())
        k = min(k, n_candidates)
        if k <= 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in profiles]
        profiles = np.ascontiguousarray(profiles, np.float32)
        if graph and n_candidates <= EXACT_POOL:
            mask = self.candidate_mask(query) if mask is None else mask
            return [self._exact(profile, mask, k) for profile in profiles]
        keep_alive = []  # FAISS selectors hold raw pointers to these
        selector = None
        if mask is None and len(excluded):
            keep_alive.append(faiss.IDSelectorBatch(len(excluded), faiss.swig_ptr(excluded)))
            selector = faiss.IDSelectorNot(keep_alive[-1])
        elif mask is not None and n_candidates < self.n_items:
            keep_alive.append(np.packbits(mask, bitorder="little"))
            selector = faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(keep_alive[-1]))
        if graph:
            params = faiss.SearchParametersHNSW()
            # A filter hides part of the graph from the walk: widen it by as much, so a pool of a
            # tenth of the items is walked as deep as the whole graph would be.
            params.efSearch = int(min(MAX_EF_SEARCH, max(index.hnsw.efSearch, k) * self.n_items / n_candidates))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        out = []
        for profile in profiles:
            # One query per call: a batch makes FAISS fan out over OpenMP threads, which on a
            # busy machine costs tens of milliseconds of waiting for sub-millisecond searches.
            scores, ids = index.search(profile[None, :], k, params=params)
            row_scores, row_ids = scores[0], ids[0]
            keep = row_ids >= 0
            if graph and keep.sum() < k:
                mask = self.candidate_mask(query) if mask is None else mask
                out.append(self._exact(profile, mask, k))
                continue
            out.append((row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return out

    def _exact(self, profile: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        candidates = np.flatnonzero(mask)
        return top_k_of(candidates, self._unit_rows(candidates) @ profile, k)

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.zscore:
            raise NotImplementedError("knn with zscore=True standardised its vectors at fit time: refit it")
        self.vectors = np.ascontiguousarray(np.concatenate([self.vectors, new_vectors]), dtype=np.float32)
        self._unit = None
        self._index = None

    def _learned(self) -> dict[str, np.ndarray]:
        # The vectors are what a NaN would spoil; the contexts are item numbers, and working
        # them out for the check would cost every refit what serving never reads.
        return {"vectors": self.vectors}

    def _state(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(c) for c in self.context_items], np.int64)
        flat = np.concatenate(self.context_items) if self.context_items else np.zeros(0, np.int64)
        return {"vectors": self.vectors, "context_lengths": lengths, "context_flat": flat}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.vectors = arrays["vectors"].astype(np.float32)
        self._unit = None
        bounds = np.concatenate([[0], np.cumsum(arrays["context_lengths"])])
        flat = arrays["context_flat"]
        self._contexts = [flat[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        self._index = None
