"""Training recommenders on the local history, and serving the latest trained model.

A trained model is a folder under ``<data folder>/models/<recommender>@<backend>@<version>/``
holding the recommender's own files (`Recommender.save`) plus ``track_ids.npy``: the library
track id of each of its items, in its item order. A row in the ``models`` table (written
*after* the folder is complete, so a reader never sees half a model) records when it was
trained, on how many positive plays, up to which play id, how many catalogue tracks were hot
and cold for it, and its parameters. The newest row of a (recommender, backend, version)
wins; older folders beyond the last `KEEP_MODELS` are deleted.

Serving cost (`ItemSideCache`): a learned model scores by inner products with its *item
side* (projected audio, factors, item embeddings), which depends only on the fitted weights
and the items. It is computed once per fitted model and kept — in memory by the engine's
`AlignedModel`, and on disk for the CLI as ``item_side.npz`` in the model's folder, keyed by
the model row, the embedding version and a digest of the track ids it covers. Tracks analysed
after training extend it (their rows only); a retrained model has a folder of its own; a
damaged or foreign file is recomputed and rewritten. ``MRS_TUI_ITEM_SIDE_CACHE=0`` turns the
disk cache and the FAISS search off (the former path: benchmarks compare the two).

Serving (`AlignedModel`): the catalogue keeps growing after training — tracks analysed today
are appended — and can lose tracks (files gone missing). The stored model is mapped onto the
current catalogue by track id: tracks it never saw are appended with `extend_items` (they are
cold and scored through the audio path), tracks that left the catalogue are excluded from its
answers. A recommender without `extend_items` simply cannot rank tracks added after it was
trained; it keeps serving the rest.

When a model is due for retraining, and which models the app retrains by itself, is the
engine's policy (`Engine.retrain_due`, `Engine.due_models`); `mrs-tui train` and `Engine.train`
train on demand whatever the count.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import recommenders as recommender_registry
from mrs_tui.errors import UserError
from mrs_tui.store.models import ModelRecord
from recommenders.base import Interactions, ProgressCallback, Query, Recommender

KEEP_MODELS = 2
# Below this a learned model only memorises a handful of plays and would mislead: refuse to train.
MIN_TRAINING_PLAYS = 30
MIN_TRAINING_SESSIONS = 5
TRACK_IDS_FILE = "track_ids.npy"
ITEM_SIDE_FILE = "item_side.npz"
ITEM_SIDE_FORMAT = 1
ITEM_GRAPH_FILE = "item_side.hnsw"  # with its facts in item_side.hnsw.json
ITEM_GRAPH_FORMAT = 1
# Wider graph building than the knn catalogue's 40. On models trained on a generated 100k-track
# library (bench/bench_serving.py), recall@20 against exact search was 0.955-0.963 at 40, with
# a few queries finding none of their top 20, and 0.99-1.00 at 200, for four times the build.
ITEM_GRAPH_EF_CONSTRUCTION = 200


def item_side_cache_enabled() -> bool:
    return os.environ.get("MRS_TUI_ITEM_SIDE_CACHE", "1").strip() != "0"


class ModelNotTrained(UserError):
    """A recommender that learns from history has no trained model for this backend yet."""


class ModelDamaged(UserError):
    """The files of the newest trained model cannot be read; it has to be trained again."""


@dataclass(frozen=True)
class ModelInfo:
    """What the app shows about a recommender on a backend."""

    recommender: str
    backend: str
    version: str
    trainable: bool  # learns from history in a background training run
    trained_at: float | None  # None: never trained (or fitted on the fly when not trainable)
    n_plays: int  # positive plays the model learned from
    n_hot: int  # catalogue tracks the model knows from history
    n_cold: int  # catalogue tracks it can only judge by their audio
    new_plays: int  # positive plays since (trainable models)
    retrain_due: bool
    catalogue_size: int

    def describe(self) -> str:
        coverage = f"{self.n_hot} hot / {self.n_cold} cold tracks"
        if not self.trainable:
            return f"{self.recommender} on {self.backend}: fitted on the fly on {self.n_plays} plays · {coverage}"
        if self.trained_at is None:
            return f"{self.recommender} on {self.backend}: not trained yet ({self.new_plays} plays available)"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.trained_at))
        due = " · retraining due" if self.retrain_due else ""
        return (
            f"{self.recommender} on {self.backend}: trained {when} on {self.n_plays} plays · {coverage}"
            f" · {self.new_plays} new plays since{due}"
        )

    def to_dict(self) -> dict:
        return {
            "recommender": self.recommender,
            "backend": self.backend,
            "version": self.version,
            "trainable": self.trainable,
            "trained_at": self.trained_at,
            "n_plays": self.n_plays,
            "n_hot": self.n_hot,
            "n_cold": self.n_cold,
            "new_plays": self.new_plays,
            "retrain_due": self.retrain_due,
            "catalogue_size": self.catalogue_size,
        }


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


# -- training ---------------------------------------------------------------------------------


def train_model(
    store,
    catalogue,
    recommender: str,
    *,
    data_folder: Path,
    gap_minutes: float = 30.0,
    params: dict | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ModelRecord:
    """Fit `recommender` on the session history over `catalogue`, save it and record it.

    `store` must belong to the calling thread (a worker passes `Store.clone()`).
    """
    from mrs_tui.history import History

    if len(catalogue) == 0:
        raise UserError(
            f"nothing is analysed with {catalogue.backend} yet",
            f"index the library first: mrs-tui index FOLDER --backend {catalogue.backend}",
        )
    # Read the play id first: plays recorded while we read count as new next time, never as lost.
    last_play_id = store.last_play_id()
    data = History(store, gap_minutes=gap_minutes).data(catalogue.index_of)
    interactions: Interactions = data.interactions
    if len(interactions) == 0:
        raise UserError(
            "there is no play history to train on",
            "play (or like) some previews in the app first; suggestions work from audio alone meanwhile",
        )
    n_sessions = len(np.unique(interactions.contexts))
    if len(interactions) < MIN_TRAINING_PLAYS or n_sessions < MIN_TRAINING_SESSIONS:
        raise UserError(
            f"{recommender} needs at least {MIN_TRAINING_PLAYS} played tracks in {MIN_TRAINING_SESSIONS} sessions "
            f"to learn from; the history has {len(interactions)} in {n_sessions}",
            "keep listening (suggestions work from audio alone meanwhile), or try `mrs-tui demo`",
        )
    model = recommender_registry.create(recommender, seed=seed, **(params or {}))
    model.fit(interactions, catalogue.vectors, progress=progress, cancel=cancel)
    if cancel is not None and cancel.is_set():
        from recommenders.base import Cancelled

        raise Cancelled
    if progress:
        progress(1, 1, "saving the model")
    trained_at = time.time()
    relative = (
        Path("models") / _safe(f"{recommender}@{catalogue.backend}@{catalogue.version}") / f"{int(trained_at * 1000)}"
    )
    folder = Path(data_folder) / relative
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    model.save(partial)
    np.save(partial / TRACK_IDS_FILE, np.asarray(catalogue.track_ids, np.int64))
    partial.replace(folder)
    hot = model.hot_mask if model.hot_mask is not None else interactions.hot_mask()
    n_hot = int(np.count_nonzero(hot))
    record = store.add_model(
        recommender=recommender,
        backend=catalogue.backend,
        version=catalogue.version,
        path=relative.as_posix(),
        trained_at=trained_at,
        n_plays=store.play_count(up_to_id=last_play_id),
        last_play_id=last_play_id,
        n_hot=n_hot,
        n_cold=len(catalogue) - n_hot,
        params={"seed": seed, **model.params},
    )
    _prune(store, Path(data_folder), recommender, catalogue.backend, catalogue.version)
    return record


def _prune(store, data_folder: Path, recommender: str, backend: str, version: str) -> None:
    for record in store.model_records(recommender, backend, version)[KEEP_MODELS:]:
        store.delete_model(record.id)
        folder = model_folder(data_folder, record.path)
        if folder is not None:  # a row naming anything outside the models folder is never acted on
            shutil.rmtree(folder, ignore_errors=True)


def model_folder(data_folder: Path, path: str) -> Path | None:
    """The folder a `models` row names, or None unless it resolves to one inside ``models/``."""
    root = (Path(data_folder) / "models").resolve()
    if Path(path).is_absolute():
        return None
    folder = (Path(data_folder) / path).resolve()
    return folder if folder.is_relative_to(root) and folder != root else None


def load_record(record: ModelRecord, data_folder: Path) -> tuple[Recommender, np.ndarray]:
    """The saved recommender and the track id of each of its items."""
    folder = model_folder(data_folder, record.path) or Path(data_folder) / "models" / "(outside the data folder)"
    damaged = ModelDamaged(f"the {record.recommender} model is damaged: train it again (t)", "knn serves meanwhile")
    try:
        model = recommender_registry.load_saved(folder)
        track_ids = np.load(folder / TRACK_IDS_FILE, allow_pickle=False)
    except Exception as exc:  # truncated, garbled, a folder in place of a file: all mean "train again"
        raise damaged from exc
    if track_ids.ndim != 1 or len(track_ids) != model.n_items:
        raise damaged
    return model, track_ids


# -- serving a trained model on today's catalogue ----------------------------------------------


class ItemSideCache:
    """The item side of one fitted model on disk, beside its weights (see the module docstring)."""

    def __init__(self, folder: Path | None, record: ModelRecord) -> None:
        self.path = None if folder is None else folder / ITEM_SIDE_FILE
        self.record = record

    def _key(self, track_ids: np.ndarray) -> str:
        digest = hashlib.blake2b(digest_size=16)
        head = f"{ITEM_SIDE_FORMAT}|{self.record.id}|{self.record.path}|{self.record.version}|"
        digest.update(head.encode())
        digest.update(np.ascontiguousarray(track_ids, "<i8").tobytes())
        return digest.hexdigest()

    def read(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(track ids, item side) as written for this model, or None: missing, damaged or another model's."""
        if self.path is None:
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                track_ids = np.asarray(data["track_ids"], np.int64)
                matrix = np.asarray(data["item_side"], np.float32)
                key = str(data["key"])
        except Exception:  # truncated, garbled (the zip's CRC-32 catches it), a folder...: recomputed
            return None
        if matrix.ndim != 2 or len(matrix) != len(track_ids) or key != self._key(track_ids):
            return None
        if not np.isfinite(matrix).all():
            return None
        return track_ids, matrix

    def write(self, track_ids: np.ndarray, matrix: np.ndarray) -> bool:
        """Write atomically; False when it cannot be written (it is only a cache)."""
        if self.path is None:
            return False
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            np.savez(
                tmp,
                track_ids=np.asarray(track_ids, np.int64),
                item_side=np.ascontiguousarray(matrix, np.float32),
                key=np.str_(self._key(track_ids)),
            )
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True

    # -- the graph over the item side (long-lived processes, see `AlignedModel.keep_item_graph`) --

    def _graph_key(self, track_ids: np.ndarray, side: np.ndarray) -> str:
        """The model and items of the cache key, plus rows sampled from the side itself."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{ITEM_GRAPH_FORMAT}|{self._key(track_ids)}|{side.shape}|".encode())
        digest.update(np.ascontiguousarray(side[:: max(1, len(side) // 4096)], np.float32).tobytes())
        return digest.hexdigest()

    def read_graph(self, track_ids: np.ndarray, side: np.ndarray):
        """The graph written for exactly this item side, or None: missing, damaged or stale."""
        if self.path is None:
            return None
        path = self.path.with_name(ITEM_GRAPH_FILE)
        try:
            import faiss

            facts = json.loads(path.with_name(ITEM_GRAPH_FILE + ".json").read_text(encoding="utf-8"))
            if facts.get("key") != self._graph_key(track_ids, side):
                return None
            graph = faiss.read_index(str(path))
        except Exception:  # missing, truncated, garbled: built again
            return None
        if graph.ntotal != len(side) or graph.d != side.shape[1] + 1 or not hasattr(graph, "hnsw"):
            return None
        return graph

    def write_graph(self, track_ids: np.ndarray, side: np.ndarray, graph) -> bool:
        """The graph first, then the facts naming it: a reader never pairs new facts with an old graph."""
        if self.path is None:
            return False
        import faiss

        from mrs_tui.checked_files import write_text_atomically

        path = self.path.with_name(ITEM_GRAPH_FILE)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            faiss.write_index(graph, str(tmp))
            tmp.replace(path)
        except (OSError, RuntimeError):  # FAISS reports a write error as RuntimeError
            tmp.unlink(missing_ok=True)
            return False
        facts = {"format": ITEM_GRAPH_FORMAT, "key": self._graph_key(track_ids, side), "items": len(side)}
        return write_text_atomically(path.with_name(ITEM_GRAPH_FILE + ".json"), json.dumps(facts))


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index in `keys` (unique ids) of each of `wanted`, -1 where absent; vectorised for 100k-track catalogues."""
    keys = np.asarray(keys, np.int64)
    if len(keys) == 0:
        return np.full(len(wanted), -1, np.int64)
    order = np.argsort(keys, kind="stable")
    at = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    return np.where(keys[order][at] == wanted, order[at], -1).astype(np.int64)


class AlignedModel(Recommender):
    """A trained model seen through the current catalogue's item numbering.

    Queries and answers use catalogue indices; inside, items are the model's own (its training
    catalogue, then the tracks appended with `extend_items`).
    """

    name = "aligned"

    def __init__(self, model: Recommender, track_ids: np.ndarray, record: ModelRecord) -> None:
        super().__init__(seed=model.seed)
        self.model = model
        self.record = record
        self.name = model.name
        self.recommends_for_hot = model.recommends_for_hot
        self.recommends_for_cold = model.recommends_for_cold
        self.uses_audio = model.uses_audio
        self.model_track_ids = np.asarray(track_ids, np.int64)
        self.extended = 0  # tracks appended after training
        self.catalogue_key: tuple | None = None
        self.to_model = np.zeros(0, np.int64)  # catalogue index -> model item (-1: unknown to the model)
        self.to_catalogue = np.full(len(self.model_track_ids), -1, np.int64)
        self.gone: list[int] = []  # model items no longer in the catalogue
        self.item_side_cache: ItemSideCache | None = None
        self.cached_item_side_ids: np.ndarray | None = None  # what the disk cache holds now
        self.light = False  # answering from the cached item side alone (`recommenders.serving`)
        self.graph_builder: threading.Thread | None = None  # getting the item side's graph (`keep_item_graph`)
        self.graph_error: str | None = None

    def covers(self, catalogue) -> bool:
        """Whether every catalogue track is one of the model's items (nothing to append)."""
        if self.catalogue_key == (len(catalogue), catalogue.last_change):
            return True
        return bool(np.isin(catalogue.track_ids, self.model_track_ids).all())

    def use_item_side_cache(self, cache: ItemSideCache) -> None:
        """Take the item side from `cache` when it was written for this model; `align` keeps it current."""
        self.item_side_cache = cache
        if not hasattr(self.model, "set_item_side"):
            return
        found = cache.read()
        if found is None:
            return
        track_ids, matrix = found
        self.cached_item_side_ids = track_ids
        n = len(self.model_track_ids)
        if len(track_ids) >= n and np.array_equal(track_ids[:n], self.model_track_ids):
            try:
                self.model.set_item_side(matrix[:n])  # rows beyond: tracks appended since, `align` adds them again
            except ValueError:  # not this model's shape after all: computed afresh
                self.cached_item_side_ids = None

    def _store_item_side(self) -> None:
        if self.item_side_cache is None or not hasattr(self.model, "item_side"):
            return
        if self.cached_item_side_ids is not None and np.array_equal(self.cached_item_side_ids, self.model_track_ids):
            return
        matrix = self.model.item_side()
        fits = matrix is not None and len(matrix) == len(self.model_track_ids)
        if fits and self.item_side_cache.write(self.model_track_ids, matrix):
            self.cached_item_side_ids = self.model_track_ids.copy()

    def align(self, catalogue) -> AlignedModel:
        """Map onto `catalogue`, appending the tracks analysed since training."""
        key = (len(catalogue), catalogue.last_change)
        if key == self.catalogue_key:
            return self
        catalogue_ids = np.asarray(catalogue.track_ids, np.int64)
        new = np.flatnonzero(_positions(self.model_track_ids, catalogue_ids) < 0)
        extend = getattr(self.model, "extend_items", None)
        if len(new) and extend is not None:
            extend(np.ascontiguousarray(catalogue.vectors[new], dtype=np.float32))
            added = catalogue_ids[new]
            self.model_track_ids = np.concatenate([self.model_track_ids, added])
            self.extended += len(added)
        self.to_model = _positions(self.model_track_ids, catalogue_ids)
        self.to_catalogue = np.full(len(self.model_track_ids), -1, np.int64)
        known = self.to_model >= 0
        self.to_catalogue[self.to_model[known]] = np.flatnonzero(known)
        self.n_items = len(catalogue)
        # Appended items are cold; pad in case a recommender's extend_items left its mask short.
        model_hot = np.zeros(len(self.model_track_ids), bool)
        if self.model.hot_mask is not None:
            own = np.asarray(self.model.hot_mask, bool)[: len(model_hot)]
            model_hot[: len(own)] = own
        hot = np.zeros(len(catalogue), bool)
        hot[known] = model_hot[self.to_model[known]]
        self.hot_mask = hot
        self.gone = np.flatnonzero(self.to_catalogue < 0).tolist()
        self.catalogue_key = key
        self._store_item_side()
        if catalogue.build_in_background:
            self.keep_item_graph()
        return self

    def keep_item_graph(self) -> threading.Thread | None:
        """Search a big item side through an HNSW graph from now on; returns the thread getting it.

        For long-lived processes (the app): the graph is read from the model's folder or built
        in the background, and exact flat search answers until it is there. A one-off CLI call
        does not bother: one flat pass costs less than reading the graph. A side that changes
        (tracks appended) drops its graph, and the next one is built for the new side.
        """
        from mrs_tui.catalogue import APPROXIMATE_ABOVE
        from recommenders.serving import await_item_graph, item_graph_awaited

        holder = getattr(self.model, "item_index", None)
        item_side = getattr(self.model, "item_side", None)
        wanted = getattr(self.model, "item_graph", False) and item_side_cache_enabled()
        if holder is None or item_side is None or not wanted:
            return None
        side = item_side()
        if side is None or len(side) <= APPROXIMATE_ABOVE or len(side) != len(self.model_track_ids):
            return None
        attached = holder.get("graph")
        if attached is not None and attached[0] is side:
            return None
        builder = self.graph_builder
        if builder is not None and builder.is_alive() and item_graph_awaited(holder, side):
            return builder
        await_item_graph(holder, side)
        builder = threading.Thread(
            target=self._get_item_graph, args=(side, self.model_track_ids.copy()), name="item-graph", daemon=True
        )
        self.graph_builder = builder
        builder.start()
        return builder

    def _get_item_graph(self, side: np.ndarray, track_ids: np.ndarray) -> None:
        from mrs_tui.catalogue import HNSW_LINKS, hnsw_ef_search
        from recommenders.serving import build_item_graph, item_graph_awaited, use_item_graph

        holder = self.model.item_index

        def replaced() -> bool:  # tracks appended or the model refitted: this side is no longer served
            return not item_graph_awaited(holder, side)

        cache = self.item_side_cache
        try:
            graph = cache.read_graph(track_ids, side) if cache is not None else None
            built = graph is None
            if built:
                graph = build_item_graph(
                    side,
                    links=HNSW_LINKS,
                    ef_construction=ITEM_GRAPH_EF_CONSTRUCTION,
                    ef_search=hnsw_ef_search(len(side)),
                    cancel=replaced,
                )
            if graph is None or replaced():
                return
            use_item_graph(holder, side, graph)
            if built and cache is not None:
                cache.write_graph(track_ids, side, graph)
        except Exception as exc:  # noqa: BLE001 - out of memory, say: the flat search keeps answering, exactly
            self.graph_error = f"the search graph of the {self.name} model could not be built ({exc})"

    def _model_query(self, query: Query) -> Query:
        def mapped(items) -> list[int]:
            out = []
            for i in items:
                m = self.to_model[int(i)] if 0 <= int(i) < len(self.to_model) else -1
                if m >= 0:
                    out.append(int(m))
            return out

        seed = None
        if query.seed is not None and 0 <= query.seed < len(self.to_model) and self.to_model[query.seed] >= 0:
            seed = int(self.to_model[query.seed])
        return Query(
            history=mapped(query.history),
            seed=seed,
            context=None,  # app sessions are new contexts for a trained model
            pool=query.pool,
            exclude=mapped(query.exclude) + self.gone,
        )

    def fit(self, interactions, item_vectors, *, progress=None, cancel=None) -> AlignedModel:
        raise TypeError("a trained model is refitted with Engine.train, not fit()")

    _fit = fit

    def score(self, query: Query) -> np.ndarray:
        scores = np.full(self.n_items, -np.inf, np.float32)
        model_scores = self.model.score(self._model_query(query))
        known = self.to_model >= 0
        scores[known] = model_scores[self.to_model[known]]
        return scores

    def recommend(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        search = getattr(self.model, "search", None)
        if search is None or not item_side_cache_enabled():
            search = self.model.recommend
        items, scores = search(self._model_query(query), k)
        mapped = self.to_catalogue[items]
        keep = mapped >= 0
        return mapped[keep], scores[keep]

    def recommend_batch(self, queries, k: int):
        return [self.recommend(q, k) for q in queries]


def _light_model(record: ModelRecord, data_folder: Path, catalogue) -> AlignedModel | None:
    """The model served from its cached item side without torch, when the cache covers the catalogue."""
    from recommenders.serving import ItemSideModel

    folder = model_folder(data_folder, record.path)
    cache = ItemSideCache(folder, record)
    found = cache.read()
    if found is None:
        return None
    track_ids, matrix = found
    if not np.isin(catalogue.track_ids, track_ids).all():
        return None
    try:
        model = ItemSideModel.open(folder, matrix)
    except Exception:  # unreadable model files: the full load reports them
        return None
    if model is None:
        return None
    aligned = AlignedModel(model, track_ids, record)
    aligned.light = True
    aligned.item_side_cache = cache
    aligned.cached_item_side_ids = track_ids
    return aligned


def serve(
    record: ModelRecord,
    data_folder: Path,
    catalogue,
    cached: AlignedModel | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> AlignedModel:
    """The model of `record` aligned on `catalogue`, reusing `cached` when it is the same model.

    If a newer record cannot be loaded, the cached (previous) model keeps serving.
    """
    if cached is not None and cached.record.id == record.id and cached.light and not cached.covers(catalogue):
        cached = None  # tracks analysed since: the full model appends them (`extend_items`)
    if (cached is None or cached.record.id != record.id) and item_side_cache_enabled():
        light = _light_model(record, data_folder, catalogue)
        if light is not None:
            return light.align(catalogue)
    if cached is None or cached.record.id != record.id:
        try:
            model, track_ids = load_record(record, data_folder)
        except UserError as exc:
            if cached is None:
                raise
            if on_error is not None:
                on_error(exc)
            return cached.align(catalogue)
        cached = AlignedModel(model, track_ids, record)
        if item_side_cache_enabled():
            cached.use_item_side_cache(ItemSideCache(model_folder(data_folder, record.path), record))
    return cached.align(catalogue)
