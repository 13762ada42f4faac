"""Answering queries from a kept item side, without torch.

A learned model scores a query as ``item_side · query_side``. `inner_product_search` is that
search for any model: one FAISS inner-product pass over the item matrix, pool and exclusions
applied inside it through an ID selector (as `recommenders.knn` does).

For big catalogues a long-lived process gives the search an HNSW graph over the item side
(`build_item_graph`, attached with `use_item_graph`): a flat pass costs 60 ms at a million
items, a walk of the graph a few milliseconds. Item sides are not unit vectors and HNSW is
built for distances, so the graph holds each row with one more coordinate,
``sqrt(R² - |x|²)`` for the largest norm R: every row then has norm R, the nearest rows by
distance are the largest inner products, and the query's extra coordinate is 0, so the
inner products are unchanged (the reduction of Bachrach et al., 2014). Pools and exclusions
stay exact in meaning as in knn: a selector inside the walk, a small pool ranked exactly,
a walk left short refilled exactly.

`ItemSideModel` serves a saved shallow, contrastive or hybrid model from its item side alone
(read from the serving cache) plus what its query side needs — numpy arrays read through
`safetensors.numpy` — so a one-off CLI call skips importing torch (about 1.8 s on a quiet
machine) and loading the full weights. BERT4Rec's query side is a transformer pass: it always
loads the full model. A model that must take new tracks (`extend_items`) is loaded in full too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recommenders.base import ContextSequences, Query, Recommender, l2_normalize, top_k_of

LIGHT_MODELS = ("shallow", "contrastive", "hybrid")
# Through a graph, a pool of at most this many candidates is ranked exactly (as in knn).
EXACT_POOL = 20_000
MAX_EF_SEARCH = 4096
GRAPH_CHUNK = 50_000  # rows added to a graph between two looks at `cancel`


def inner_product_search(
    model: Recommender, holder: dict, side: np.ndarray, vector: np.ndarray, query: Query, k: int, correction=None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (items, scores) of ``side · vector`` among `model`'s candidates for `query`.

    `holder["index"]` keeps the flat FAISS index over `side` between calls, `holder["graph"]` an
    attached graph (`use_item_graph`); the caller clears `holder` when the side changes.
    `correction` = (items, delta): those items score delta more than their inner product
    (ELSA's ``− x``); the top k + m are fetched so the corrected top k is exact.
    """
    mask = model.candidate_mask(query)
    n_candidates = int(np.count_nonzero(mask))
    k = min(int(k), n_candidates)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    fetch = min(k + (len(correction[0]) if correction is not None else 0), n_candidates)
    attached = holder.get("graph")
    graph = attached[1] if attached is not None and attached[0] is side else None
    if graph is not None and n_candidates <= EXACT_POOL:
        ids, scores = _exact_search(side, vector, mask, fetch)
    else:
        ids, scores = _index_search(holder, side, graph, vector, mask, n_candidates, fetch)
        if graph is not None and len(ids) < fetch:  # the filtered walk came back short
            ids, scores = _exact_search(side, vector, mask, fetch)
    if correction is not None:
        scores = scores + np.where(np.isin(ids, correction[0]), np.float32(correction[1]), np.float32(0))
        order = np.argsort(-scores, kind="stable")
        ids, scores = ids[order], scores[order]
    return ids[:k], scores[:k]


def _exact_search(side: np.ndarray, vector: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    candidates = np.flatnonzero(mask)
    return top_k_of(candidates, side[candidates] @ np.asarray(vector, np.float32), k)


def _index_search(holder, side, graph, vector, mask, n_candidates: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Through the graph when there is one, else through the flat index kept in `holder`."""
    import faiss

    query = np.ascontiguousarray(vector, dtype=np.float32)[None, :]
    if graph is not None:
        query = np.hstack([query, np.zeros((1, 1), np.float32)])
        params = faiss.SearchParametersHNSW()
        # A filter hides part of the graph from the walk: widen it by as much (as knn does).
        params.efSearch = int(min(MAX_EF_SEARCH, max(graph.hnsw.efSearch, k) * len(side) / n_candidates))
        index = graph
    else:
        index = holder.get("index")
        if index is None:
            index = faiss.IndexFlatIP(side.shape[1])
            index.add(np.ascontiguousarray(side, np.float32))
            holder["index"] = index
        params = faiss.SearchParameters()
    bitmap = None
    if n_candidates < len(side):
        bitmap = np.packbits(mask, bitorder="little")
        params.sel = faiss.IDSelectorBitmap(len(side), faiss.swig_ptr(bitmap))
    # One query is one pass over the matrix: OpenMP threads only add hand-off latency, and on a
    # busy 2-core machine a descheduled one cost 4x (p50 84 ms against 21 ms at 100k x 200).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(query, k, params=params)
    finally:
        faiss.omp_set_num_threads(threads)
    del bitmap  # the selector pointed into it until here
    keep = ids[0] >= 0
    ids, scores = ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
    if graph is None:
        return ids, scores
    # The graph ranks by distance to rows with the extra coordinate: score from the item side itself.
    scores = (side[ids] @ np.asarray(vector, np.float32)).astype(np.float32)
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def build_item_graph(side: np.ndarray, *, links: int, ef_construction: int, ef_search: int, cancel=None):
    """An HNSW graph for inner-product search over `side` (see the module docstring); None if cancelled."""
    import faiss

    side = np.asarray(side, np.float32)
    squared = np.einsum("ij,ij->i", side, side, dtype=np.float64)
    extra = np.sqrt(np.maximum(squared.max(initial=0.0) - squared, 0.0)).astype(np.float32)
    graph = faiss.IndexHNSWFlat(side.shape[1] + 1, links, faiss.METRIC_L2)
    graph.hnsw.efConstruction = ef_construction
    graph.hnsw.efSearch = ef_search
    for start in range(0, len(side), GRAPH_CHUNK):
        if cancel is not None and cancel():
            return None
        rows = side[start : start + GRAPH_CHUNK]
        graph.add(np.ascontiguousarray(np.hstack([rows, extra[start : start + GRAPH_CHUNK, None]])))
    return graph


def await_item_graph(holder: dict, side: np.ndarray) -> None:
    """Note that a graph for `side` is on its way; the note goes when the side changes (`holder` cleared)."""
    holder["awaited"] = side


def item_graph_awaited(holder: dict, side: np.ndarray) -> bool:
    """Is `side` still the side a graph is awaited for (not replaced since `await_item_graph`)?"""
    return holder.get("awaited") is side


def use_item_graph(holder: dict, side: np.ndarray, graph) -> None:
    """Let `inner_product_search` walk `graph` for as long as the model's item side is `side`."""
    holder["graph"] = (side, graph)


class ItemSideModel(Recommender):
    """A saved shallow / contrastive / hybrid model answering from its kept item side (no torch)."""

    name = "item-side"
    item_graph = True  # shallow, contrastive, hybrid: see `LearnedRecommender.item_graph`

    def __init__(self, kind: str, seed: int, side: np.ndarray, hot_mask: np.ndarray, extra: dict) -> None:
        super().__init__(seed=seed)
        self.name = kind
        self.side = np.ascontiguousarray(side, np.float32)
        self.hot_mask = np.asarray(hot_mask, bool)
        self.n_items = len(self.side)
        self.sequences: ContextSequences = extra.get("sequences", ContextSequences())
        self._projection = extra.get("projection")  # shallow: W (in × out), b, and every item's input
        self._bias = extra.get("bias")
        self._inputs = extra.get("inputs")
        self.item_index: dict = {}  # FAISS indexes over the item side, see `inner_product_search`

    @classmethod
    def open(cls, folder: Path, side: np.ndarray) -> ItemSideModel | None:
        """The light model of the saved model in `folder` with item side `side`; None if it cannot be one."""
        meta = json.loads((folder / "params.json").read_text(encoding="utf-8"))
        kind, trained = meta["name"], int(meta["n_items"])
        # Rows beyond the trained items are tracks appended since (cold); the shallow net's query
        # side needs every item's input, which only the full model holds for those.
        if kind not in LIGHT_MODELS or len(side) < trained or (kind == "shallow" and len(side) != trained):
            return None
        with np.load(folder / "state.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        hot = np.zeros(len(side), bool)
        saved_hot = np.asarray(arrays.get("hot_mask", np.zeros(0, bool)), bool)[: len(side)]
        hot[: len(saved_hot)] = saved_hot
        extra: dict = {"sequences": ContextSequences.from_arrays(arrays)}
        if kind == "shallow":
            from safetensors.numpy import safe_open

            with safe_open(str(folder / "model.safetensors"), framework="numpy") as weights:
                extra["projection"] = np.ascontiguousarray(weights.get_tensor("project.0.weight").T, np.float32)
                extra["bias"] = weights.get_tensor("project.0.bias").astype(np.float32)
                extra["inputs"] = weights.get_tensor("items.weight").astype(np.float32)
            if len(extra["inputs"]) != len(side):
                return None
        return cls(kind, int(meta["seed"]), side, hot, extra)

    def _fit(self, interactions, item_vectors, *, progress, cancel) -> None:
        raise TypeError("a served model is refitted with Engine.train")

    def item_side(self) -> np.ndarray:
        return self.side

    def query_side(self, query: Query) -> np.ndarray | None:
        items = self.sequences.query_items(query)
        if not items:
            return None
        index = np.asarray(items, np.int64)
        if self.name == "shallow":
            mean = self._inputs[index].mean(axis=0, keepdims=True)
            return l2_normalize(np.maximum(mean @ self._projection + self._bias, 0.0))[0]
        if self.name == "hybrid":
            return self.side[np.unique(index)].sum(axis=0)
        return self.side[index].mean(axis=0)

    def _correction(self, query: Query):
        if self.name != "hybrid":
            return None
        return np.unique(np.asarray(self.sequences.query_items(query), np.int64)), -1.0

    def score(self, query: Query) -> np.ndarray:
        vector = self.query_side(query)
        if vector is None:
            return np.zeros(self.n_items, np.float32)
        scores = self.side @ vector
        correction = self._correction(query)
        if correction is not None:
            scores[correction[0]] += np.float32(correction[1])
        return scores.astype(np.float32, copy=False)

    def search(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        vector = self.query_side(query)
        if vector is None:
            return self.recommend(query, k)
        return inner_product_search(self, self.item_index, self.side, vector, query, k, self._correction(query))
