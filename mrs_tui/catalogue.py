"""The searchable catalogue of one embedding model: its vectors and a FAISS index over them.

Derived from the `embeddings` table, never the other way round: it can be thrown away and
rebuilt at any time. It is cached beside the database (``indexes/<backend>@<version>.npz``)
and extended incrementally — only rows written since the last refresh are read — and it
rebuilds itself when rows disappear (a track went missing or was re-analysed). One index
never mixes embedding versions.

Items are numbered 0..n-1 in the order of `track_ids`; recommenders see these numbers.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrs_tui.store import Store


@dataclass
class Catalogue:
    backend: str
    version: str
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    last_rowid: int = 0
    _index_of: dict[int, int] | None = field(default=None, repr=False)
    _faiss: object | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1] if self.vectors.ndim == 2 else 0

    @property
    def index_of(self) -> dict[int, int]:
        if self._index_of is None:
            self._index_of = {int(t): i for i, t in enumerate(self.track_ids)}
        return self._index_of

    def vector(self, track_id: int) -> np.ndarray | None:
        i = self.index_of.get(track_id)
        return None if i is None else self.vectors[i]

    @property
    def faiss_index(self):
        """FAISS inner-product index over the L2-normalised vectors (cosine), built on demand."""
        with self._lock:
            if self._faiss is None or self._faiss.ntotal != len(self):
                import faiss

                from recommenders.base import l2_normalize

                index = faiss.IndexFlatIP(self.dim)
                if len(self):
                    index.add(l2_normalize(self.vectors))
                self._faiss = index
            return self._faiss

    # -- keeping up with the store -----------------------------------------------------------

    def refresh(self, store: Store) -> int:
        """Pull rows written since the last refresh; returns how many items were added."""
        expected = store.vector_count(self.backend, self.version)
        ids, matrix, last = store.embedding_matrix(self.backend, self.version, since_rowid=self.last_rowid)
        if len(ids) and len(self) and np.isin(ids, self.track_ids).any():
            return self.rebuild(store)  # a track was re-analysed: its old row must go
        if len(ids):
            self._append(ids, matrix)
            self.last_rowid = last
        if len(self) != expected:
            return self.rebuild(store)
        return len(ids)

    def rebuild(self, store: Store) -> int:
        ids, matrix, last = store.embedding_matrix(self.backend, self.version)
        self.track_ids, self.vectors, self.last_rowid = ids, matrix, last
        self._index_of = None
        self._faiss = None
        return len(ids)

    def _append(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        start = len(self)
        if start == 0:
            self.track_ids, self.vectors = ids, matrix
        else:
            if matrix.shape[1] != self.dim:
                raise ValueError(
                    f"{self.backend}@{self.version}: vector width changed ({self.dim} -> {matrix.shape[1]})"
                )
            self.track_ids = np.concatenate([self.track_ids, ids])
            self.vectors = np.concatenate([self.vectors, matrix])
        if self._index_of is not None:
            self._index_of.update({int(t): start + i for i, t in enumerate(ids)})
        if self._faiss is not None:
            from recommenders.base import l2_normalize

            with self._lock:
                self._faiss.add(l2_normalize(matrix))

    # -- the on-disk cache -----------------------------------------------------------------

    @staticmethod
    def cache_path(folder: Path, backend: str, version: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.+@=-]", "_", f"{backend}@{version}")
        return folder / f"{safe}.npz"

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = self.cache_path(folder, self.backend, self.version)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")  # writers never share one
        np.savez(tmp, track_ids=self.track_ids, vectors=self.vectors, last_rowid=np.int64(self.last_rowid))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, store: Store, backend: str, version: str, folder: Path | None = None) -> Catalogue:
        """The cached catalogue brought up to date, or a fresh one read from the store."""
        catalogue = cls(backend, version)
        if folder is not None:
            path = cls.cache_path(folder, backend, version)
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as data:
                        catalogue.track_ids = data["track_ids"]
                        catalogue.vectors = data["vectors"]
                        catalogue.last_rowid = int(data["last_rowid"])
                except (OSError, ValueError, KeyError):
                    catalogue = cls(backend, version)  # a damaged cache is just rebuilt
        if catalogue.last_rowid > store.max_embedding_rowid(backend, version):
            catalogue = cls(backend, version)  # the database was replaced under the cache
        catalogue.refresh(store)
        return catalogue
