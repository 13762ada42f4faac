"""Answering queries from a kept item side, without torch.

A learned model scores a query as ``item_side · query_side``. `inner_product_search` is that
search for any model: one FAISS inner-product pass over the item matrix, pool and exclusions
applied inside it through an ID selector (as `recommenders.knn` does).

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

from recommenders.base import ContextSequences, Query, Recommender, l2_normalize

LIGHT_MODELS = ("shallow", "contrastive", "hybrid")


def inner_product_search(
    model: Recommender, holder: dict, side: np.ndarray, vector: np.ndarray, query: Query, k: int, correction=None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (items, scores) of ``side · vector`` among `model`'s candidates for `query`.

    `holder["index"]` keeps the FAISS index over `side` between calls (the caller drops it when
    the side changes). `correction` = (items, delta): those items score delta more than their
    inner product (ELSA's ``− x``); the top k + m are fetched so the corrected top k is exact.
    """
    mask = model.candidate_mask(query)
    n_candidates = int(np.count_nonzero(mask))
    k = min(int(k), n_candidates)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    fetch = min(k + (len(correction[0]) if correction is not None else 0), n_candidates)
    import faiss

    index = holder.get("index")
    if index is None:
        index = faiss.IndexFlatIP(side.shape[1])
        index.add(np.ascontiguousarray(side, np.float32))
        holder["index"] = index
    params = None
    if n_candidates < len(side):
        bitmap = np.packbits(mask, bitorder="little")
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(side), faiss.swig_ptr(bitmap)))
    query_matrix = np.ascontiguousarray(vector, dtype=np.float32)[None, :]
    # One query is one pass over the matrix: OpenMP threads only add hand-off latency, and on a
    # busy 2-core machine a descheduled one cost 4x (p50 84 ms against 21 ms at 100k x 200).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(query_matrix, fetch, params=params)
    finally:
        faiss.omp_set_num_threads(threads)
    keep = ids[0] >= 0
    ids, scores = ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
    if correction is not None:
        scores = scores + np.where(np.isin(ids, correction[0]), np.float32(correction[1]), np.float32(0))
        order = np.argsort(-scores, kind="stable")
        ids, scores = ids[order], scores[order]
    return ids[:k], scores[:k]


class ItemSideModel(Recommender):
    """A saved shallow / contrastive / hybrid model answering from its kept item side (no torch)."""

    name = "item-side"

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
        self._holder: dict = {}

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
        return inner_product_search(self, self._holder, self.side, vector, query, k, self._correction(query))
