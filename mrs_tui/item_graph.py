"""An HNSW graph seen as an index over a catalogue's items, when its nodes are not simply the items.

FAISS cannot take a node out of an HNSW graph, nor move one. When a track leaves the search
its node stays in the graph (walks still pass through it, so the graph stays connected) but
is retired: it never comes out of a search. A re-analysed track's new vector is a new node at
the end, standing for the same item; its old node is retired. So each node maps to an item
(`node_items`, -1 for a retired node); the live nodes always stand for the items 0..m-1 of
the catalogue, m of them, once each. The catalogue builds the graph afresh once too many
nodes are retired.

To a recommender this looks like any FAISS index over the items: ``ntotal`` counts the
items, labels are item numbers, and a selector in the search parameters is asked about items.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np


def encode_nodes(node_items: np.ndarray) -> str:
    """`node_items` as text for the graph's facts file: its steps compress to almost nothing."""
    steps = np.diff(np.asarray(node_items, np.int64), prepend=np.int64(0)).astype("<i8")
    return base64.b64encode(zlib.compress(steps.tobytes())).decode("ascii")


def decode_nodes(text: str, nodes: int, items: int) -> np.ndarray:
    """The node -> item map `encode_nodes` wrote; ValueError unless it fits a graph of `nodes`
    nodes whose live ones stand for items 0..items-1, once each."""
    node_items = np.cumsum(np.frombuffer(zlib.decompress(base64.b64decode(text)), "<i8")).astype(np.int64)
    live = node_items[node_items >= 0]
    if len(node_items) != nodes or len(live) != items or (node_items < -1).any():
        raise ValueError("the node map does not fit the graph")
    if items and (live.max() >= items or np.bincount(live, minlength=items).max() != 1):
        raise ValueError("the node map names an item twice")
    return node_items


def item_nodes(node_items: np.ndarray) -> np.ndarray:
    """Item -> its live node: the inverse of `node_items`."""
    live = np.flatnonzero(node_items >= 0)
    out = np.empty(len(live), np.int64)
    out[node_items[live]] = live
    return out


class ItemGraph:
    """A FAISS HNSW graph whose nodes map to items through `node_items`, searched as an index over items."""

    def __init__(self, graph, node_items: np.ndarray) -> None:
        import faiss

        self.graph = graph
        self.node_items = node_items
        self.ntotal = int((node_items >= 0).sum())
        self.nodes = int(graph.ntotal)
        self._id_map = faiss.Int64Vector()  # what FAISS translates node ids with inside the walk
        faiss.copy_array_to_vector(node_items, self._id_map)

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
        keep_alive = [inner]  # the selectors hold raw pointers to each other
        user = getattr(params, "sel", None) if params is not None else None
        if user is not None:
            inner = faiss.IDSelectorAnd(inner, user)
            keep_alive.append(inner)
        walk = faiss.SearchParametersHNSW()
        depth = getattr(params, "efSearch", 0) or self.graph.hnsw.efSearch
        # Retired nodes are walked but never returned: widen the walk by as much.
        walk.efSearch = int(depth * self.nodes / max(1, self.ntotal)) + 1
        translated = faiss.IDSelectorTranslated(self._id_map, inner)
        walk.sel = translated
        scores, nodes = self.graph.search(x, k, params=walk)
        labels = np.where(nodes >= 0, self.node_items[np.maximum(nodes, 0)], -1)
        return scores, labels
