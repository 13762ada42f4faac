"""An HNSW graph seen as an index over a catalogue's items, when some of its nodes are retired.

FAISS cannot take a node out of an HNSW graph. When a track leaves the search or is
re-analysed, its node stays in the graph (walks still pass through it, so the graph stays
connected) but is retired: it never comes out of a search. A re-analysed track's new vector
is a new node at the end. The live nodes, in node order, are the catalogue's items in order,
so `node_items` (node -> item number, -1 for a retired node) follows from which nodes are
retired. The catalogue builds the graph afresh once too many nodes are retired.

To a recommender this looks like any FAISS index over the items: ``ntotal`` counts the
items, labels are item numbers, and a selector in the search parameters is asked about items.
"""

from __future__ import annotations

import numpy as np


def node_items(alive: np.ndarray) -> np.ndarray:
    """Node -> item number for a graph whose live nodes are `alive`; -1 for a retired node."""
    items = np.cumsum(alive, dtype=np.int64) - 1
    items[~alive] = -1
    return items


class ItemGraph:
    """A FAISS HNSW graph with retired nodes, searched as an index over the live ones."""

    def __init__(self, graph, alive: np.ndarray) -> None:
        import faiss

        self.graph = graph
        self.node_items = node_items(alive)
        self.ntotal = int(alive.sum())
        self.nodes = int(graph.ntotal)
        self._id_map = faiss.Int64Vector()  # what FAISS translates node ids with inside the walk
        faiss.copy_array_to_vector(self.node_items, self._id_map)

    @property
    def d(self) -> int:
        return self.graph.d

    @property
    def hnsw(self):
        return self.graph.hnsw

    def search(self, x: np.ndarray, k: int, *, params=None):
        """Like `Index.search`: scores and item numbers (-1 past the last hit)."""
        import faiss

        inner = faiss.IDSelectorRange(0, self.ntotal)  # a retired node translates to -1: out of range
        keep_alive = [inner]
        user = getattr(params, "sel", None) if params is not None else None
        if user is not None:
            inner = faiss.IDSelectorAnd(inner, user)
            keep_alive.append(inner)
        selector = faiss.IDSelectorTranslated(self._id_map, inner)
        walk = faiss.SearchParametersHNSW()
        depth = getattr(params, "efSearch", 0) or self.graph.hnsw.efSearch
        # Retired nodes are walked but never returned: widen the walk by as much.
        walk.efSearch = int(depth * self.nodes / max(1, self.ntotal)) + 1
        walk.sel = selector
        scores, nodes = self.graph.search(x, k, params=walk)
        labels = np.where(nodes >= 0, self.node_items[np.maximum(nodes, 0)], -1)
        return scores, labels
