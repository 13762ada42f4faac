"""The searchable catalogue of one embedding model: its vectors and a FAISS index over them.

Derived from the `embeddings` table, never the other way round: it can be thrown away and
rebuilt at any time. It is cached beside the database (``indexes/<backend>@<version>.npz``)
and extended incrementally — only rows written since the last refresh are read, keyed on the
store's change counter — and it rebuilds itself when rows disappear or change (a track went
missing or was re-analysed). The cache carries a checksum: a damaged or garbled file is
simply rebuilt from the database. One index never mixes embedding versions.

Items are numbered 0..n-1 in the order of `track_ids`; recommenders see these numbers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrs_tui.store import Store

CACHE_FORMAT = 2


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

    # -- keeping up with the store -----------------------------------------------------------

    def refresh(self, store: Store) -> int:
        """Pull what changed since the last refresh; returns how many items were added.

        Keyed on the store's change counter, which never repeats: a re-analysed track, a vector
        deleted or a track gone missing since then is always seen, and costs a rebuild.
        """
        current = store.change_count()
        if current == self.last_change and self.database_uid == store.database_uid():
            return 0
        if self.database_uid != store.database_uid() or current < self.last_change:
            return self.rebuild(store)  # another database, or this one was replaced by an older copy
        ids, matrix, changed = store.embedding_matrix(self.backend, self.version, since_change=self.last_change)
        if len(self) and np.isin(np.fromiter(changed, np.int64, len(changed)), self.track_ids).any():
            return self.rebuild(store)  # a track was re-analysed or left the search: its old row must go
        if len(ids) and len(self) and matrix.shape[1] != self.dim:
            return self.rebuild(store)
        if len(ids):
            self._append(ids, matrix)
        self.last_change = current
        if len(self) != store.vector_count(self.backend, self.version):
            return self.rebuild(store)
        return len(ids)

    def rebuild(self, store: Store) -> int:
        current, uid = store.change_count(), store.database_uid()  # read first: later writes are seen next time
        ids, matrix, _ = store.embedding_matrix(self.backend, self.version)
        self.track_ids, self.vectors, self.last_change, self.database_uid = ids, matrix, current, uid
        self._index_of = None
        self._faiss = None
        self._unit = None
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

    # -- the on-disk cache -----------------------------------------------------------------

    @staticmethod
    def cache_path(folder: Path, backend: str, version: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.+@=-]", "_", f"{backend}@{version}")
        return folder / f"{safe}.npz"

    def checksum(self) -> str:
        """Digest of everything the cache holds, so a truncated, zeroed or permuted file is caught."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{CACHE_FORMAT}|{self.backend}|{self.version}|{self.database_uid}|{self.last_change}|".encode())
        digest.update(np.ascontiguousarray(self.track_ids, "<i8").tobytes())
        digest.update(np.ascontiguousarray(self.vectors, "<f4").tobytes())
        digest.update(str(self.vectors.shape).encode())
        return digest.hexdigest()

    def save(self, folder: Path) -> Path | None:
        """Write the cache (atomically); None when it cannot be written: it is only a cache."""
        path = self.cache_path(folder, self.backend, self.version)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")  # writers never share one
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
                checksum=np.str_(self.checksum()),
            )
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return None
        return path

    @classmethod
    def read_cache(cls, path: Path, backend: str, version: str) -> Catalogue | None:
        """The catalogue a cache file holds, or None when it is missing or damaged in any way."""
        try:
            with np.load(path, allow_pickle=False) as data:
                catalogue = cls(backend, version)
                catalogue.track_ids = np.asarray(data["track_ids"], np.int64)
                catalogue.vectors = np.asarray(data["vectors"], np.float32)
                catalogue.last_change = int(data["last_change"])
                catalogue.database_uid = str(data["database_uid"])
                stored = str(data["checksum"])
        except Exception:  # truncated, not a zip, a folder, an old format...: it is rebuilt
            return None
        if stored != catalogue.checksum() or catalogue.vectors.ndim != 2:
            return None
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
        else:
            catalogue.refresh(store)
        return catalogue
