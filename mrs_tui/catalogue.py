"""The searchable catalogue of one embedding model: its vectors and a FAISS index over them.

Derived from the `embeddings` table, never the other way round: it can be thrown away and
rebuilt at any time. It is cached beside the database (``indexes/<backend>@<version>.npz``)
and kept up to date incrementally — only rows written since the last refresh are read, keyed
on the store's change counter. A re-analysed track gets its new vector in its place; a track
that left the search loses its item (the later ones move down); many such changes at once, or
another database, rebuild it from the store. The cache carries a checksum: a damaged or garbled file is
simply rebuilt from the database (`checked_files` spares the hash of a file that passed it
before and has not changed since). One index never mixes embedding versions.

Above `APPROXIMATE_ABOVE` items the search goes through an HNSW graph instead of a flat scan.
The graph is built in a background thread (the flat index answers, exactly, until it is ready),
extended as items are appended; the node of an item taken out or re-analysed is retired
(`item_graph`), a re-analysed item's new vector added as a node of its own, and the graph is
built afresh once a tenth of its nodes are retired. It is kept beside the vector cache
(``<backend>@<version>.hnsw`` with a ``.hnsw.json`` that says what it holds and which item each
node stands for); a missing, damaged or mismatched graph file is simply built again. HNSW over IVF with scalar
quantisation, measured on 100k generated MusiCNN-like vectors: recall@20 0.99 against 0.96 at
the same sub-millisecond latency, and no training step, so items added later are placed as well
as the first ones; it costs more memory (the vectors plus 16 links each) and a longer build.

Items are numbered 0..n-1 in the order of `track_ids`; recommenders see these numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrs_tui.checked_files import note_checked, was_checked, write_text_atomically
from mrs_tui.item_graph import ItemGraph, decode_nodes, encode_nodes, item_nodes
from mrs_tui.store import Store

CACHE_FORMAT = 2
# Above this many items the search uses the HNSW graph. Measured on 2 busy cores with 200-d
# vectors (bench/bench_scale.py prints the figures again): a flat scan's p95 is under 1 ms at 5k,
# about 5 ms at 10k, 7.5 ms at 25k, 20 ms at 100k; building the graph for 20k takes seconds.
APPROXIMATE_ABOVE = 20_000
HNSW_LINKS = 16  # M: links per node
HNSW_EF_CONSTRUCTION = 40
# Walk depth: recall@20 against exact search on the generated libraries (bench/bench_scale.py)
# is 0.985 at 100k and 0.948 at 1M with 128; 0.969 with 192 and 0.981 with 256 at 1M (1.7 ms).
# The shallower walk up to a few hundred thousand items halves a search there (2.5 to 1.2 ms
# per suggestion at 100k) for recall still above 0.95.
HNSW_EF_SEARCH = 256
HNSW_EF_SEARCH_SMALL = 128
HNSW_SMALL_UP_TO = 300_000


def hnsw_ef_search(items: int) -> int:
    """How deep a search walks the graph of a catalogue of `items` items."""
    return HNSW_EF_SEARCH_SMALL if items <= HNSW_SMALL_UP_TO else HNSW_EF_SEARCH


# Retired nodes (tracks removed or re-analysed since the graph was built) are walked but never
# returned; past this share of the nodes the graph is built afresh in the background.
MAX_RETIRED_SHARE = 0.1
APPROXIMATE_FORMAT = 1


@dataclass
class Catalogue:
    backend: str
    version: str
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    last_change: int = -1  # the store's change counter when this was last brought up to date
    database_uid: str = ""
    _index_of: dict[int, int] | None = field(default=None, repr=False)
    _faiss: object | None = field(default=None, repr=False)
    _unit: np.ndarray | None = field(default=None, repr=False)
    approximate_above: int = field(default_factory=lambda: APPROXIMATE_ABOVE)  # read when made: tests lower it
    build_in_background: bool = True  # False: a missing graph is built only when `search_index(wait=True)`
    folder: Path | None = None  # where the derived files live (the graph is saved there when built)
    _graph: object | None = field(default=None, repr=False)  # the FAISS graph: its nodes, live and retired
    # Node -> item (-1: retired; see `item_graph`); None while node j is item j for every node.
    _graph_nodes: np.ndarray | None = field(default=None, repr=False)
    _graph_view: ItemGraph | None = field(default=None, repr=False)  # the graph as an index over items
    _graph_saved: int = field(default=0, repr=False)  # nodes the graph file on disk holds (-1: an older state)
    _graph_looked: bool = field(default=False, repr=False)  # the file on disk was tried
    _graph_builder: threading.Thread | None = field(default=None, repr=False)
    graph_error: str | None = None  # why the last background build failed (searches stay exact)
    _generation: int = field(default=0, repr=False)  # moves on every rebuild: a graph of older items is void
    # (checksum, items, generation): the checksum of the first `items` items as a cache file has
    # them, known from reading or writing that file. A graph file written beside the same items
    # names the same checksum, so it is known to hold them without comparing every vector.
    _known_prefix: tuple[str, int, int] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1] if self.vectors.ndim == 2 else 0

    @property
    def index_of(self) -> dict[int, int]:
        if self._index_of is None:
            self._index_of = dict(zip(self.track_ids.tolist(), range(len(self.track_ids)), strict=True))
        return self._index_of

    def vector(self, track_id: int) -> np.ndarray | None:
        i = self.index_of.get(track_id)
        return None if i is None else self.vectors[i]

    @property
    def unit(self) -> np.ndarray:
        """The vectors L2-normalised (what the index holds and cosine needs), computed once."""
        unit = self._unit
        if unit is None or len(unit) != len(self):
            from recommenders.base import l2_normalize

            unit = self._unit = l2_normalize(self.vectors)
        return unit

    @property
    def faiss_index(self):
        """FAISS inner-product index over the L2-normalised vectors (cosine), built on demand."""
        with self._lock:
            if self._faiss is None or self._faiss.ntotal != len(self):
                import faiss

                index = faiss.IndexFlatIP(self.dim)
                if len(self):
                    index.add(self.unit)
                self._faiss = index
            return self._faiss

    # -- the approximate index ------------------------------------------------------------------

    @property
    def approximate(self) -> bool:
        """Whether this catalogue is big enough to be searched through its HNSW graph."""
        return len(self) > self.approximate_above

    def search_index(self, *, wait: bool = False):
        """The index a search should use now: the HNSW graph above the threshold once it holds
        every item, else the flat index (exact). Starts the graph's build when it is missing;
        `wait` blocks until it is there (benchmarks, `index`)."""
        if not self.approximate:
            return self.faiss_index
        graph = self._current_graph()
        if graph is None and (wait or self.build_in_background):
            self._start_graph_build()
            if wait:
                self.wait_for_graph()
                graph = self._current_graph()
        return graph if graph is not None else self.faiss_index

    def wait_for_graph(self) -> None:
        builder = self._graph_builder
        if builder is not None:
            builder.join()

    def _current_graph(self):
        """The graph holding every item (extended here by a few appended items), or None."""
        with self._lock:
            self._look_for_graph_file()
            graph = self._graph
            if graph is None:
                return None
            live = self._graph_live()
            if live > len(self):
                return None
            missing = len(self) - live
            if missing > max(1000, live // 20):
                return None  # many new items: the background build adds them, flat answers meanwhile
            if missing:
                from recommenders.base import l2_normalize

                rows = self._unit[live:] if self._unit is not None else l2_normalize(self.vectors[live:])
                self._graph_nodes = _extend_graph(graph, self._graph_nodes, rows, live)
                self._graph_view = None
            graph.hnsw.efSearch = hnsw_ef_search(len(self))  # the library may have grown past a step
            if self._graph_nodes is None:
                return graph
            if self._graph_view is None or self._graph_view.nodes != graph.ntotal:
                self._graph_view = ItemGraph(graph, self._graph_nodes)
            return self._graph_view

    def _look_for_graph_file(self) -> None:
        """Read the graph file, once, if no graph is in memory; called under the lock."""
        if self._graph is None and not self._graph_looked and self.folder is not None:
            self._graph_looked = True
            found = self._read_graph(self.folder)
            if found is not None:
                self._graph, self._graph_nodes = found
                self._graph_view = None
                self._graph_saved = self._graph.ntotal

    def _graph_live(self) -> int:
        """Items the graph holds, the first ones (its live nodes); called under the lock."""
        if self._graph is None:
            return 0
        nodes = self._graph_nodes
        if nodes is None:
            return self._graph.ntotal
        view = self._graph_view
        if view is not None and view.node_items is nodes:
            return view.ntotal  # counted once per map: this runs on every search
        return int((nodes >= 0).sum())

    def _start_graph_build(self) -> None:
        with self._lock:
            if self._graph_builder is not None and self._graph_builder.is_alive():
                return
            self._graph_builder = threading.Thread(target=self._build_graph, name=f"hnsw-{self.backend}", daemon=True)
            self._graph_builder.start()

    def _build_graph(self) -> None:
        try:
            self._build_graph_now()
        except Exception as exc:  # noqa: BLE001 - out of memory, say: the flat index keeps answering, exactly
            self.graph_error = f"the search graph of {self.backend} could not be built ({exc})"

    def _build_graph_now(self) -> None:
        import faiss

        with self._lock:
            generation, graph, nodes = self._generation, self._graph, self._graph_nodes
            live, unit = self._graph_live(), self.unit
        if graph is None or live > len(unit):
            graph = faiss.IndexHNSWFlat(unit.shape[1], HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            graph.hnsw.efSearch = hnsw_ef_search(len(unit))
            nodes, live = None, 0
        else:
            graph = faiss.clone_index(graph)  # the current one may be searched meanwhile
        nodes = _extend_graph(graph, nodes, unit[live:], live)  # outside the lock: this is the long part
        live = len(unit)
        with self._lock:
            if generation != self._generation:
                return  # items were replaced or removed meanwhile: a later build starts from them
            if live < len(self):
                nodes = _extend_graph(graph, nodes, self.unit[live:], live)
            self._graph, self._graph_nodes, self._graph_view = graph, nodes, None
        if self.folder is not None:
            self._write_graph(self.folder)

    def graph_path(self, folder: Path) -> Path:
        return self.cache_path(folder, self.backend, self.version).with_suffix(".hnsw")

    def _graph_facts(self, ntotal: int) -> dict:
        digest = hashlib.blake2b(np.ascontiguousarray(self.track_ids[:ntotal], "<i8").tobytes(), digest_size=16)
        return {
            "format": APPROXIMATE_FORMAT,
            "database_uid": self.database_uid,
            "items": int(ntotal),
            "dim": self.dim,
            "track_ids": digest.hexdigest(),
        }

    def _prefix_checksum(self, items: int) -> str | None:
        """The cache checksum of exactly the first `items` items, where a cache file told it."""
        known = self._known_prefix
        if known is None or known[1] != items or known[2] != self._generation:
            return None
        return known[0]

    def _write_graph(self, folder: Path) -> Path | None:
        """Write the graph (atomically) with what it holds; None when it cannot be written."""
        import faiss

        with self._lock:
            graph, node_items = self._graph, self._graph_nodes
            if graph is None or graph.ntotal == self._graph_saved:
                return None
            live = self._graph_live()
            facts = self._graph_facts(live)
            facts["vectors"] = self._prefix_checksum(live)
            facts["nodes"] = None if node_items is None else encode_nodes(node_items)
            data = faiss.serialize_index(graph)
            nodes = graph.ntotal
        path = self.graph_path(folder)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        facts["file_digest"] = hashlib.blake2b(data, digest_size=16).hexdigest()  # the buffer, not a copy
        try:
            folder.mkdir(parents=True, exist_ok=True)
            data.tofile(tmp)
            tmp.replace(path)
            path.with_name(path.name + ".json").write_text(json.dumps(facts))
        except OSError:
            tmp.unlink(missing_ok=True)
            return None
        with self._lock:
            if self._graph is graph and self._graph_saved != -1:
                self._graph_saved = nodes
        return path

    def graph_file_matches(self, folder: Path) -> bool:
        """Whether the graph file in `folder` is sound and holds this catalogue's first items
        (read whole and every vector compared, whatever an earlier check noted)."""
        return self._read_graph(folder, trust_checked=False) is not None

    def _read_graph(self, folder: Path, *, trust_checked: bool = True):
        """(graph, node -> item map or None when node j is item j) of the graph file if it is
        sound and holds the first items of this catalogue, else None.

        With `trust_checked`, a file unchanged since a full check passed is not hashed again, and
        a graph written beside the cache file these items came from is not compared vector by
        vector (at a million tracks each costs seconds).
        """
        import faiss

        path = self.graph_path(folder)
        try:
            facts = json.loads(path.with_name(path.name + ".json").read_text())
            expected = {**self._graph_facts(int(facts["items"])), "file_digest": facts["file_digest"]}
            if {key: value for key, value in facts.items() if key not in ("vectors", "nodes")} != expected:
                return None  # another database, other items, another format
            checked = trust_checked and was_checked(path, facts["file_digest"])
            if not checked:
                digest = hashlib.blake2b(digest_size=16)
                with path.open("rb") as file:
                    while chunk := file.read(1 << 24):
                        digest.update(chunk)
                if digest.hexdigest() != facts["file_digest"]:
                    return None  # damaged or replaced: built again (damaged links could crash a search)
            graph = faiss.read_index(str(path))
            items, encoded = int(facts["items"]), facts.get("nodes")
            node_items = None if encoded is None else decode_nodes(encoded, graph.ntotal, items)
            if (node_items is None and graph.ntotal != items) or graph.d != self.dim or items > len(self):
                return None
            known = self._prefix_checksum(items)
            if not (trust_checked and known is not None and facts.get("vectors") == known):
                # The same track ids may hold other vectors (a track re-analysed since): compare them all.
                storage = faiss.downcast_index(graph.storage)
                stored = np.asarray(faiss.rev_swig_ptr(storage.get_xb(), graph.ntotal * graph.d))
                stored = stored.reshape(graph.ntotal, graph.d)
                if node_items is not None:
                    stored = stored[item_nodes(node_items)]
                if not np.array_equal(stored, self.unit[:items]):
                    return None
                if trust_checked and known is not None:  # the next start need not compare them again
                    facts["vectors"] = known
                    write_text_atomically(path.with_name(path.name + ".json"), json.dumps(facts))
            if not checked:
                note_checked(path, facts["file_digest"])
        except Exception:  # missing, truncated, not JSON, not an index...: built again
            return None
        graph.hnsw.efSearch = hnsw_ef_search(len(self))
        return graph, node_items

    # -- keeping up with the store -----------------------------------------------------------

    def refresh(self, store: Store) -> int:
        """Pull what changed since the last refresh; returns how many items were added.

        Keyed on the store's change counter, which never repeats: a re-analysed track, a vector
        deleted or a track gone missing since then is always seen. A re-analysed track's new
        vector takes its item's place, a track that left the search is taken out (their old
        graph nodes retired); a rebuild from the store is left for many such changes at once,
        or a change of dimension.
        """
        current = store.change_count()
        if current == self.last_change and self.database_uid == store.database_uid():
            return 0
        if self.database_uid != store.database_uid() or current < self.last_change:
            return self.rebuild(store)  # another database, or this one was replaced by an older copy
        ids, matrix, changed = store.embedding_matrix(self.backend, self.version, since_change=self.last_change)
        if len(ids) and len(self) and matrix.shape[1] != self.dim:
            return self.rebuild(store)
        changed_ids = np.fromiter(changed, np.int64, len(changed))
        touched = np.zeros(0, np.int64)
        if len(self) and len(changed_ids):
            touched = np.flatnonzero(np.isin(self.track_ids, changed_ids))  # items whose track changed
        if len(touched) > max(1000, len(self) // 10):
            return self.rebuild(store)  # a fresh read costs about as much as that many changes
        if len(touched):
            with self._lock:  # the graph file holds the items as they were: retire nodes in it
                if self.approximate:
                    self._look_for_graph_file()
            # Rows come in track order: each touched item's new row, if it is still searchable.
            at = np.minimum(np.searchsorted(ids, self.track_ids[touched]), max(0, len(ids) - 1))
            found = (ids[at] == self.track_ids[touched]) if len(ids) else np.zeros(len(touched), bool)
            if found.any():
                self._replace(touched[found], matrix[at[found]])  # re-analysed: the new vector in its place
                fresh = np.ones(len(ids), bool)
                fresh[at[found]] = False
                ids, matrix = ids[fresh], matrix[fresh]
            if not found.all():
                self._remove(touched[~found])  # left the search
        if len(ids):
            self._append(ids, matrix)
        self.last_change = current
        stored = store.vector_count(self.backend, self.version)
        if len(self) != stored:
            # Deleted vectors leave no row to read: the ids still searchable tell which ones went.
            deleted = np.flatnonzero(~np.isin(self.track_ids, store.searchable_track_ids(self.backend, self.version)))
            if 0 < len(deleted) <= max(1000, len(self) // 10):
                self._remove(deleted)
            if len(self) != stored:
                return self.rebuild(store)
        return len(ids)

    def rebuild(self, store: Store) -> int:
        current, uid = store.change_count(), store.database_uid()  # read first: later writes are seen next time
        ids, matrix, _ = store.embedding_matrix(self.backend, self.version)
        self.track_ids, self.vectors, self.last_change, self.database_uid = ids, matrix, current, uid
        with self._lock:
            self._index_of = None
            self._faiss = None
            self._unit = None
            self._graph = None  # its items were these: built again from the new ones
            self._graph_nodes = self._graph_view = None
            self._graph_saved = 0
            self._graph_looked = True  # a graph file on disk holds the old items
            self._generation += 1
            self._known_prefix = None
        return len(ids)

    def _append(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        start = len(self)
        if start == 0:
            self.track_ids, self.vectors = ids, matrix
        else:
            self.track_ids = np.concatenate([self.track_ids, ids])
            self.vectors = np.concatenate([self.vectors, matrix])
        if self._index_of is not None:
            self._index_of.update({int(t): start + i for i, t in enumerate(ids)})
        if self._unit is not None or self._faiss is not None:
            from recommenders.base import l2_normalize

            added = l2_normalize(matrix)
            if self._unit is not None:
                self._unit = np.concatenate([self._unit, added])
            if self._faiss is not None:
                with self._lock:
                    self._faiss.add(added)

    def _replace(self, items: np.ndarray, matrix: np.ndarray) -> None:
        """New vectors for these items (re-analysed tracks), each in its place. In the graph
        their old nodes are retired and the new vectors added as their nodes.

        Written in place: a search running meanwhile in another thread may see a row half
        written, which affects that row's score in that one search.
        """
        import faiss

        from recommenders.base import l2_normalize

        with self._lock:
            self.vectors[items] = matrix
            added = l2_normalize(matrix)
            if self._unit is not None:
                self._unit[items] = added
            if self._faiss is not None:
                flat = faiss.rev_swig_ptr(self._faiss.get_xb(), self._faiss.ntotal * self._faiss.d)
                np.asarray(flat).reshape(self._faiss.ntotal, self._faiss.d)[items] = added
            self._items_changed()
            graph = self._graph
            if graph is None:
                return
            in_graph = items < self._graph_live()  # items appended since are added with the others
            nodes = self._node_map()
            nodes[item_nodes(nodes)[items[in_graph]]] = -1
            if in_graph.any():
                graph.add(added[in_graph])
                nodes = np.concatenate([nodes, items[in_graph]])
            self._set_graph_nodes(nodes)

    def _remove(self, items: np.ndarray) -> None:
        """Take these items out; the later ones move down. Their graph nodes are retired."""
        import faiss

        keep = np.ones(len(self), bool)
        keep[items] = False
        with self._lock:
            self.track_ids, self.vectors = self.track_ids[keep], self.vectors[keep]
            self._index_of = None
            if self._unit is not None:
                self._unit = self._unit[keep]
            if self._faiss is not None:
                self._faiss.remove_ids(faiss.IDSelectorBatch(len(items), faiss.swig_ptr(items)))
            self._items_changed()
            if self._graph is None:
                return
            nodes = self._node_map()
            live = nodes >= 0
            gone = np.isin(nodes, items)
            # An item moves down by the number of items taken out before it.
            nodes[live] -= np.searchsorted(np.sort(items), nodes[live])
            nodes[gone] = -1
            self._set_graph_nodes(nodes)

    def _items_changed(self) -> None:
        """Bookkeeping after items were replaced or removed; called under the lock."""
        self._generation += 1  # a graph being built holds the old items: it is void
        self._known_prefix = None
        self._graph_view = None
        self._graph_saved = -1

    def _node_map(self) -> np.ndarray:
        """A copy of the graph's node -> item map, spelled out; called under the lock."""
        if self._graph_nodes is None:
            return np.arange(self._graph.ntotal, dtype=np.int64)
        return self._graph_nodes.copy()

    def _set_graph_nodes(self, nodes: np.ndarray) -> None:
        """Take the new node map, or drop the graph when too much of it is retired; under the lock."""
        if (nodes < 0).sum() > MAX_RETIRED_SHARE * len(nodes):
            self._graph, self._graph_nodes = None, None  # built afresh; the flat index answers meanwhile
            self._graph_looked = True  # the file on disk is older still
        else:
            self._graph_nodes = nodes

    # -- the on-disk cache -----------------------------------------------------------------

    @staticmethod
    def cache_path(folder: Path, backend: str, version: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.+@=-]", "_", f"{backend}@{version}")
        return folder / f"{safe}.npz"

    def checksum(self) -> str:
        """Digest of everything the cache holds, so a truncated, zeroed or permuted file is caught."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{CACHE_FORMAT}|{self.backend}|{self.version}|{self.database_uid}|{self.last_change}|".encode())
        # The arrays' own buffers (no copies: a million vectors are 800 MB).
        # Flat byte views, not memoryview casts: a cast refuses an empty (0, dim) array, which is
        # what an indexer that found nothing left to analyse saves.
        digest.update(np.ascontiguousarray(self.track_ids, "<i8").reshape(-1).view(np.uint8))
        digest.update(np.ascontiguousarray(self.vectors, "<f4").reshape(-1).view(np.uint8))
        digest.update(str(self.vectors.shape).encode())
        return digest.hexdigest()

    def save(self, folder: Path) -> Path | None:
        """Write the cache (atomically); None when it cannot be written: it is only a cache."""
        path = self.cache_path(folder, self.backend, self.version)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")  # writers never share one
        checksum = self.checksum()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # something put a folder where the cache goes: the cache wins
            np.savez(
                tmp,
                track_ids=self.track_ids,
                vectors=self.vectors,
                last_change=np.int64(self.last_change),
                database_uid=np.str_(self.database_uid),
                checksum=np.str_(checksum),
            )
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return None
        self.folder = folder
        self._known_prefix = (checksum, len(self), self._generation)
        self._write_graph(folder)
        return path

    @classmethod
    def read_cache(cls, path: Path, backend: str, version: str, *, trust_checked: bool = True) -> Catalogue | None:
        """The catalogue a cache file holds, or None when it is missing or damaged in any way.

        With `trust_checked`, a file unchanged since a full check passed is not hashed again.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                catalogue = cls(backend, version)
                stored = str(data["checksum"])
                trusted = trust_checked and was_checked(path, stored)
                catalogue.track_ids = np.asarray(data["track_ids"], np.int64)
                # A file checked before is mapped, not read: pages come in as searches touch them.
                vectors = _mapped_member(path, "vectors") if trusted else None
                catalogue.vectors = np.asarray(data["vectors"], np.float32) if vectors is None else vectors
                catalogue.last_change = int(data["last_change"])
                catalogue.database_uid = str(data["database_uid"])
        except Exception:  # truncated, not a zip, a folder, an old format...: it is rebuilt
            return None
        if catalogue.vectors.ndim != 2 or len(catalogue.vectors) != len(catalogue.track_ids):
            return None
        if not trusted:
            if stored != catalogue.checksum():
                return None
            note_checked(path, stored)
        catalogue._known_prefix = (stored, len(catalogue), catalogue._generation)
        return catalogue

    @classmethod
    def load(cls, store: Store, backend: str, version: str, folder: Path | None = None) -> Catalogue:
        """The cached catalogue brought up to date, or a fresh one read from the store."""
        catalogue = None
        if folder is not None:
            catalogue = cls.read_cache(cls.cache_path(folder, backend, version), backend, version)
        if catalogue is None:
            catalogue = cls(backend, version)
            catalogue.rebuild(store)
            catalogue._graph_looked = False  # a rebuild from the same items may still match the graph file
            if folder is not None and len(catalogue):
                catalogue.save(folder)  # missing or damaged: the next start reads it instead of the store
        else:
            catalogue.folder = folder
            before = (catalogue.last_change, catalogue.database_uid)
            catalogue.refresh(store)
            if folder is not None and (catalogue.last_change, catalogue.database_uid) != before:
                # Behind the database: saved as it is now, with its graph brought up to date (read
                # while the file's items were still these), so that the next start reads both as they are.
                if catalogue.approximate:
                    catalogue._current_graph()
                catalogue.save(folder)
        catalogue.folder = folder
        return catalogue


def _extend_graph(graph, node_items: np.ndarray | None, rows: np.ndarray, first_item: int) -> np.ndarray | None:
    """Add `rows`, the items from `first_item` on, to `graph`; the node -> item map that follows
    (None: node j is item j)."""
    nodes_before = graph.ntotal
    if len(rows):
        graph.add(rows)
    if node_items is None and nodes_before == first_item:
        return None
    before = np.arange(nodes_before, dtype=np.int64) if node_items is None else node_items
    return np.concatenate([before, np.arange(first_item, first_item + len(rows), dtype=np.int64)])


def _mapped_member(path: Path, name: str) -> np.ndarray | None:
    """The float32 array `name` of an uncompressed .npz file, memory-mapped copy-on-write (writes
    stay in this process), or None where it cannot be mapped (then it is read as usual)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as file:
        file.seek(info.header_offset)
        local = file.read(30)  # the member's local header, then its name and extra field
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        file.seek(info.header_offset + 30 + name_length + extra_length)
        major, _ = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
    if dtype != np.dtype("<f4") or fortran_order or len(shape) != 2 or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)
