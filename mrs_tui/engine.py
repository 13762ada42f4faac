"""The headless core the TUI, the CLI and the tests share.

`Engine` ties the store, the play history, the backends and the recommenders together:
scan a folder, analyse it, suggest next tracks for a seed and the current session, and
record what was played. It never imports Textual; heavy libraries (torch, librosa, faiss)
are imported only by the operations that need them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import backends as backend_registry
import recommenders as recommender_registry
from mrs_tui import training
from mrs_tui.catalogue import Catalogue
from mrs_tui.config import Settings
from mrs_tui.errors import UserError
from mrs_tui.history import History, HotTracks
from mrs_tui.indexing import Indexer, IndexReport, ProgressFn
from mrs_tui.library import ScanReport, scan
from mrs_tui.store import Play, Store, Track
from mrs_tui.store.models import ModelRecord
from recommenders.base import Cancelled, Query, Recommender

if TYPE_CHECKING:
    from mrs_tui.cluster import ClusterOptions
    from mrs_tui.evaluation.datasets import Dataset
    from mrs_tui.evaluation.runner import CellExecutor, EvalRun, EvalSettings

# How many recent positive plays make the profile of the cold-start view without a seed.
RECENT_PROFILE_PLAYS = 20
# What answers while the selected learned recommender has no trained model yet.
FALLBACK_RECOMMENDER = "knn"
# Expected seconds per track above which analysis is not started by itself: the user chooses.
SLOW_SECONDS_PER_TRACK = 2.0


@dataclass
class Suggestion:
    track: Track
    score: float
    new: bool  # never played (whatever the model learned from)
    reason: str = ""
    percentile: float = 0.0  # rank among the candidates as a percentile (100: first); comparable everywhere


@dataclass
class SuggestionList:
    items: list[Suggestion]
    backend: str
    version: str
    recommender: str
    mode: str  # "hot", "cold" (audio only) or "popular" (nothing to go on yet)
    seed: Track | None = None
    note: str = ""
    profile_size: int = 0  # tracks the suggestions were computed from
    pool: str = "all"  # candidates: "all", "hot" (known from history) or "cold" (not in what the model learned from)
    basis: str = "session"  # what the profile is: "session" (seed + session) or "recent" (recent plays)
    seed_weight: float | None = None  # share of the seed in the ranking when seed and session are blended
    candidates: int = 0  # how many tracks were ranked: the base of each suggestion's rank percentile
    served: str = ""  # set when a measured winner serves this mode ("hot winner of evaluation #3")
    fallback_from: str | None = None  # the selected recommender, when it was untrained and knn answered

    def describe(self) -> str:
        session = self.profile_size - (self.seed is not None)
        basis = " and ".join(
            part
            for part in (
                "the selected track" if self.seed is not None else "",
                f"{session} track{'s' if session != 1 else ''} of this session" if session > 0 else "",
            )
            if part
        )
        source = {
            "hot": f"from {basis}" if basis else "",
            "cold": f"cold start: only tracks the model has not learned from, by audio{f', from {basis}' if basis else ''}",
            "popular": "most played (no seed or session yet)",
        }.get(self.mode, self.mode)
        weight = (
            f" · seed {self.seed_weight:.0%} / session {1 - self.seed_weight:.0%}"
            if self.seed_weight is not None
            else ""
        )
        served = f" · {self.served}" if self.served else ""
        return f"{self.recommender} on {self.backend}{served}" + (f" · {source}" if source else "") + weight


@dataclass
class _FittedModel:
    model: Recommender
    key: tuple
    hot_version: int = -1  # the version of the hot tracks the model's hot mask shows


def _hot_mask(catalogue: Catalogue, mask: np.ndarray | None, hot: HotTracks, since: int) -> np.ndarray:
    """The hot mask over the catalogue's items: `mask` (as of version `since` of the hot tracks)
    with the tracks flipped since then set again, so after a play it costs the play, not the
    history; built from every hot track when there is no mask or it is too old."""
    index_of = catalogue.index_of
    changed = None if mask is None else hot.changed_since(since)
    if changed is None:
        out, changed = np.zeros(len(catalogue), bool), hot.current()
    else:
        out = mask.copy()
    for track_id in changed:
        if track_id in index_of:
            out[index_of[track_id]] = hot.is_hot(track_id)
    return out


@dataclass(frozen=True)
class TrainOutcome:
    """What became of one model in a training job."""

    recommender: str
    backend: str
    record: ModelRecord | None = None  # the new model; None when it was not trained
    error: str | None = None  # why it could not be trained (the job went on with the next one)
    cancelled: bool = False  # the job stopped here; nothing was saved for this model
    seconds: float = 0.0

    @property
    def trained(self) -> bool:
        return self.record is not None

    def describe(self) -> str:
        if self.cancelled:
            return f"{self.recommender}: training cancelled; the previous model keeps serving"
        if self.record is None:
            return f"{self.recommender} on {self.backend}: {self.error}"
        return f"{self.recommender} on {self.backend}: trained on {self.record.n_plays} plays"


TrainProgressFn = Callable[[str, float, float, str], None]  # (recommender, done, total, message)


@dataclass(frozen=True)
class BackendRow:
    """One backend as the pickers and `mrs-tui backends` show it."""

    name: str
    display_name: str
    state: str  # "ready", "weights missing", "needs a GPU"
    detail: str
    ready: bool
    default: bool
    dim: int
    sample_rate: int
    clip_seconds: float | None
    version: str
    weights_license: str
    code_license: str
    source: str
    needs_gpu: bool
    description: str
    seconds_per_track: float | None  # expected on this machine's CPU; None: unknown
    slow: bool  # analysis waits for the user to choose what to spend it on
    analysed: int | None = None  # tracks with a vector of the current version; None: not asked

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "status": self.state,
            "detail": self.detail,
            "default": self.default,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "version": self.version,
            "weights_license": self.weights_license,
            "code_license": self.code_license,
            "source": self.source,
            "seconds_per_track_cpu": self.seconds_per_track,
            "needs_gpu": self.needs_gpu,
            "slow": self.slow,
            "description": self.description,
            **({"analysed": self.analysed} if self.analysed is not None else {}),
        }


def expected_seconds_per_track(name: str, cores: int | None = None) -> float | None:
    """Seconds one 30-s clip takes on this machine's CPU, or None when nobody measured it.

    The registry's figures were measured on 2 cores; more cores help roughly linearly up to 8.
    """
    spec = backend_registry.get_spec(name)
    if spec.cpu_seconds_per_track is None:
        return None
    cores = cores or os.cpu_count() or 2
    return round(spec.cpu_seconds_per_track * 2 / min(max(cores, 1), 8), 2)


def is_slow_backend(name: str, *, gpu: bool | None = None) -> bool:
    """Too slow to analyse a library unasked: over `SLOW_SECONDS_PER_TRACK` here (a GPU makes every backend quick)."""
    if backend_registry.gpu_visible() if gpu is None else gpu:
        return False
    seconds = expected_seconds_per_track(name)
    return seconds is None or seconds > SLOW_SECONDS_PER_TRACK


def backend_rows(
    analysed: dict[tuple[str, str], tuple[int, int]] | None = None,
    version_of: Callable[[str], str] | None = None,
) -> list[BackendRow]:
    """Every registered backend with its status and expected speed (no backend module is imported).

    `analysed` is `Store.embedding_counts()`, when the caller has a library to count in, and
    `version_of` the embedding version each backend's vectors are counted at.
    """
    default = backend_registry.default_backend_name()
    gpu = backend_registry.gpu_visible()
    rows = []
    for spec in backend_registry.list_specs():
        status = backend_registry.backend_status(spec.name)
        rows.append(
            BackendRow(
                name=spec.name,
                display_name=spec.display_name,
                state=status.state,
                detail=status.detail,
                ready=status.ready,
                default=spec.name == default,
                dim=spec.dim,
                sample_rate=spec.sample_rate,
                clip_seconds=spec.clip_seconds,
                version=spec.version,
                weights_license=spec.weights_license,
                code_license=spec.code_license,
                source=spec.source,
                needs_gpu=spec.needs_gpu,
                description=spec.description,
                seconds_per_track=expected_seconds_per_track(spec.name),
                slow=is_slow_backend(spec.name, gpu=gpu),
                analysed=None
                if analysed is None
                else analysed.get((spec.name, version_of(spec.name) if version_of else spec.version), (0, 0))[0],
            )
        )
    return rows


@dataclass(frozen=True)
class TrackFacts:
    """What the details pane shows beyond the track's own tags (read from the database)."""

    track_id: int
    plays: int  # positive plays
    sounds_like: list[str]  # descriptive tags of the audio, best first


@dataclass
class Engine:
    store: Store
    settings: Settings = field(default_factory=Settings)
    backend_options: dict[str, dict] = field(default_factory=dict)
    # A big library's HNSW graph, when missing, is built in a background thread of this process;
    # a one-shot command turns it off (the thread would die with it) and searches exactly meanwhile.
    background_builds: bool = True

    def __post_init__(self) -> None:
        self.history = History(self.store, gap_minutes=self.settings.session_gap_minutes)
        self._backend = backend_registry.default_backend_name(self.settings.backend)
        self._recommender = self.settings.recommender or "knn"
        recommender_registry.get_spec(self._recommender)
        self._catalogues: dict[tuple[str, str], Catalogue] = {}
        self._models: dict[tuple[str, str, str], _FittedModel] = {}
        self._trained: dict[tuple[str, str, str], training.AlignedModel] = {}
        self._loaded_backends: dict[tuple[str, str], backend_registry.Backend] = {}
        self._lock = threading.RLock()
        self._served: dict | None = None  # the measured winners serving each mode (read once)

    # -- where things live -------------------------------------------------------------------

    @property
    def data_folder(self) -> Path:
        """Derived files (vector caches, trained models) beside the database."""
        db = self.store.path
        return db.parent / f"{db.stem}-data"

    # -- backends ------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        backend_registry.get_spec(name)
        self._backend = name

    @property
    def recommender(self) -> str:
        return self._recommender

    @recommender.setter
    def recommender(self, name: str) -> None:
        recommender_registry.get_spec(name)
        self._recommender = name

    def version(self, backend: str | None = None) -> str:
        name = backend or self.backend
        return backend_registry.embedding_version(name, **self.backend_options.get(name, {}))

    def load_backend(self, name: str | None = None, weights: str | Path | None = None) -> backend_registry.Backend:
        name = name or self.backend
        key = (name, self.version(name))
        with self._lock:
            if key not in self._loaded_backends:
                options = self.backend_options.get(name, {})
                self._loaded_backends[key] = backend_registry.load_backend(name, weights, **options)
            return self._loaded_backends[key]

    def backend_rows(self) -> list[BackendRow]:
        """The backend picker's rows: status, expected speed and how much of the library is analysed."""
        return backend_rows(self.store.embedding_counts(), self.version)

    # -- library ------------------------------------------------------------------------------

    def scan(self, root: Path | str, **kwargs) -> ScanReport:
        return scan(self.store, root, **kwargs)

    def index(
        self,
        backends: list[str] | None = None,
        *,
        track_ids: list[int] | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        cluster: ClusterOptions | None = None,
    ) -> IndexReport:
        """Analyse the tracks that need it here, or on a Ray cluster (`cluster`, else the `ray` setting);
        then rebuild the indexes."""
        names = backends or [self.backend]
        tuning = {"batch_size": self.settings.index_batch_size, "clip_position": self.settings.clip_position}
        if cluster is None and self.settings.ray:
            from mrs_tui.cluster import ClusterOptions

            cluster = ClusterOptions(self.settings.ray)
        if cluster is not None:  # the models load on the cluster's workers, not here
            from mrs_tui.cluster.indexing import BackendPlan, ClusterIndexer

            plans = [BackendPlan.of(n, self.backend_options.get(n)) for n in names]
            indexer = ClusterIndexer(self.store, plans, cluster, **tuning)
        else:
            indexer = Indexer(self.store, [self.load_backend(n) for n in names], **tuning)
        report = indexer.run(track_ids, progress=progress, cancel=cancel)
        for name in names:
            catalogue = self.catalogue(name)
            catalogue.search_index(wait=True)  # a big library's HNSW graph is built (or extended) here
            catalogue.save(self.data_folder / "indexes")
        return report

    def catalogue(self, backend: str | None = None) -> Catalogue:
        name = backend or self.backend
        key = (name, self.version(name))
        with self._lock:
            catalogue = self._catalogues.get(key)
            if catalogue is None:
                catalogue = Catalogue.load(self.store, *key, folder=self.data_folder / "indexes")
                catalogue.build_in_background = self.background_builds
                self._catalogues[key] = catalogue
            else:
                catalogue.refresh(self.store)
            return catalogue

    def resolve_track(self, ref: str | int) -> Track:
        """A track by id or by path (absolute or relative to the current folder)."""
        text = str(ref)
        if text.isdigit():
            track = self.store.track(int(text))
            if track is None:
                raise UserError(f"no track with id {text}", "see `mrs-tui library` for ids")
            return track
        path = Path(text).expanduser()
        track = self.store.track_by_path(str(path.resolve())) or self.store.track_by_path(text)
        if track is None:
            raise UserError(f"{text} is not in the library", "index its folder first: mrs-tui index FOLDER")
        return track

    def track_facts(self, track_id: int) -> TrackFacts:
        """Plays and audio tags of one track (the details pane asks from a worker)."""
        return TrackFacts(track_id, self.store.play_count(track_id=track_id), self.track_tags(track_id))

    # -- history -------------------------------------------------------------------------------

    def record(self, track_id: int, event: str, *, position_s: float | None = None) -> Play:
        return self.history.record(track_id, event, position_s=position_s)

    def preview_started(self, track_id: int) -> Play:
        """A preview began: the track joins the session at once, so suggestions follow it."""
        return self.record(track_id, "play", position_s=0.0)

    def preview_ended(self, track_id: int, heard: float, length: float, *, finished: bool) -> Play:
        """A preview stopped: before half its length it was a skip, otherwise a full listen."""
        event = "complete" if finished or (length > 0 and heard >= length / 2) else "skip"
        return self.record(track_id, event, position_s=heard)

    # -- recommending ----------------------------------------------------------------------------

    def fitted_model(self, recommender: str | None = None, backend: str | None = None) -> Recommender:
        """A recommender fitted on the current history and catalogue (cached until either changes)."""
        rec_name = recommender or self.recommender
        name = backend or self.backend
        catalogue = self.catalogue(name)
        spec = recommender_registry.get_spec(rec_name)
        if spec.trainable:
            return self.trained_model(rec_name, name)
        # Plays counted as well as the last id: a deleted session must be seen, not only a new play.
        key = (len(catalogue), catalogue.last_change, *self.store.play_totals())
        cache_key = (rec_name, name, self.version(name))
        with self._lock:
            cached = self._models.get(cache_key)
            if cached is not None and cached.key == key:
                return cached.model
            if cached is not None and cached.key[:2] == key[:2] and hasattr(cached.model, "refit_history"):
                # Only plays changed: vectors and index stay; the hot items follow the new plays alone.
                hot_tracks = self.history.hot_tracks
                version = hot_tracks.update()
                hot = _hot_mask(catalogue, cached.model.hot_mask, hot_tracks, cached.hot_version)
                index_of = catalogue.index_of
                cached.model.refit_history(hot, lambda: self.history.data(index_of).interactions)
                cached.key, cached.hot_version = key, version
                return cached.model
            data = self.history.data(catalogue.index_of)
            model = recommender_registry.create(rec_name)
            model.fit(data.interactions, catalogue.vectors)
            if hasattr(model, "use_index") and not getattr(model, "zscore", False):
                model.use_unit_source(lambda: catalogue.unit)  # one copy of the normalised vectors, not two
                model.use_index_source(catalogue.search_index)  # flat, or the HNSW graph once built
            hot_version = -1
            if hasattr(model, "refit_history"):  # later plays update the mask from this version on
                hot_version = self.history.hot_tracks.update()
                hot = _hot_mask(catalogue, None, self.history.hot_tracks, hot_version)
                model.refit_history(hot, lambda: data.interactions)
            self._models[cache_key] = _FittedModel(model, key, hot_version)
            return model

    def prepare(self, backends: Sequence[str], recommender: str | None = None) -> list[str]:
        """Load the catalogues and fit (or load) the models that `suggest` on these backends would
        need, so that a comparison over them answers at once; the backends made ready.

        A learned recommender that is not trained for a backend is skipped: its column says so.
        """
        ready = []
        for name in backends:
            try:
                self.fitted_model(recommender, name)
            except UserError:  # ModelNotTrained among them
                continue
            ready.append(name)
        return ready

    def trained_model(self, recommender: str, backend: str) -> Recommender:
        """The newest trained model of (recommender, backend, version), aligned on today's catalogue.

        Tracks analysed after training are appended with the recommender's `extend_items` (cold,
        scored from audio). A newer model written by `train` — in this or another process —
        replaces the cached one at the next call; until then the previous one keeps serving.
        """
        version = self.version(backend)
        record = self.store.latest_model(recommender, backend, version)
        if record is None:
            raise training.ModelNotTrained(
                f"the {recommender} recommender is not trained for {backend} yet",
                "run `mrs-tui train` (or press t in the app)",
            )
        catalogue = self.catalogue(backend)
        key = (recommender, backend, version)
        with self._lock:
            model = training.serve(record, self.data_folder, catalogue, self._trained.get(key))
            self._trained[key] = model
            return model

    def _worker_store(self) -> Store:
        """A connection for the calling thread (an in-memory store can only be shared as is)."""
        try:
            return self.store.clone()
        except ValueError:
            return self.store

    def train(
        self,
        recommender: str | None = None,
        backend: str | None = None,
        *,
        params: dict | None = None,
        progress=None,
        cancel: threading.Event | None = None,
    ) -> ModelRecord:
        """Train a recommender on the whole play history; safe to call from a worker thread.

        `progress(done, total, message)` reports fitting; `cancel` stops it (raises `Cancelled`,
        nothing is saved). The model serves from the next `suggest` on; the previous one serves
        until then.
        """
        rec_name = recommender or self.recommender
        spec = recommender_registry.get_spec(rec_name)
        if not spec.trainable:
            raise UserError(
                f"{rec_name} learns nothing in advance: it is fitted on the fly from the current history",
                "train a recommender that learns from history: "
                + (", ".join(n for n, s in recommender_registry.REGISTRY.items() if s.trainable) or "none installed"),
            )
        name = backend or self.backend
        backend_registry.get_spec(name)
        version = self.version(name)
        store = self._worker_store()
        try:
            if store is self.store:
                catalogue = self.catalogue(name)
            else:
                catalogue = Catalogue.load(store, name, version, folder=self.data_folder / "indexes")
            return training.train_model(
                store,
                catalogue,
                rec_name,
                data_folder=self.data_folder,
                gap_minutes=self.settings.session_gap_minutes,
                params=params,
                progress=progress,
                cancel=cancel,
            )
        finally:
            if store is not self.store:
                store.close()

    def train_models(
        self,
        names: Sequence[str],
        backend: str | None = None,
        *,
        progress: TrainProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[TrainOutcome]:
        """Train several recommenders one after the other, yielding what became of each.

        A model that cannot be trained (no history, not a learning recommender) is reported and
        the next one is tried; a cancel stops the job after reporting the model it interrupted
        (nothing is saved for it, the previous model keeps serving).
        """
        name = backend or self.backend
        for rec_name in names:
            if progress is not None:
                progress(rec_name, 0, 1, "preparing")
            started = time.perf_counter()
            fit_progress = None
            if progress is not None:

                def fit_progress(done: float, total: float, message: str, _name: str = rec_name) -> None:
                    progress(_name, done, total, message)

            try:
                record = self.train(rec_name, name, progress=fit_progress, cancel=cancel)
            except Cancelled:
                yield TrainOutcome(rec_name, name, cancelled=True, seconds=time.perf_counter() - started)
                return
            except UserError as exc:
                yield TrainOutcome(rec_name, name, error=str(exc), seconds=time.perf_counter() - started)
                continue
            yield TrainOutcome(rec_name, name, record=record, seconds=time.perf_counter() - started)

    # Retrain policy: a model is due when at least `Settings.retrain_after_plays` positive plays
    # (play, complete, like) were recorded since the play its training data ended with — for the
    # first model, since the start of the history. `train` trains on demand whatever the count.

    def retrain_due(self, recommender: str | None = None, backend: str | None = None) -> bool:
        """Has a trainable recommender seen `Settings.retrain_after_plays` new plays since training?"""
        rec_name = recommender or self.recommender
        if not recommender_registry.get_spec(rec_name).trainable:
            return False
        name = backend or self.backend
        return self._is_due(self._new_plays(self.store.latest_model(rec_name, name, self.version(name))))

    def _new_plays(self, record: ModelRecord | None) -> int:
        return self.store.play_count(after_id=record.last_play_id if record else 0)

    def _is_due(self, new_plays: int) -> bool:
        return new_plays >= max(1, int(self.settings.retrain_after_plays))

    def due_models(self, backend: str | None = None) -> list[str]:
        """Models to retrain in the background for `backend`: those that are due, among the selected
        recommender and any other that was trained before (a model nobody asked for is never trained
        by surprise)."""
        name = backend or self.backend
        version = self.version(name)
        return [
            rec_name
            for rec_name, spec in recommender_registry.REGISTRY.items()
            if spec.trainable
            and (rec_name == self.recommender or self.store.latest_model(rec_name, name, version) is not None)
            and self.retrain_due(rec_name, name)
        ]

    def model_info(self, recommender: str | None = None, backend: str | None = None) -> training.ModelInfo:
        """Trained when, on how many plays, and how much of the catalogue is hot or cold for it."""
        rec_name = recommender or self.recommender
        spec = recommender_registry.get_spec(rec_name)
        name = backend or self.backend
        version = self.version(name)
        catalogue = self.catalogue(name)
        size = len(catalogue)
        if not spec.trainable:
            played = self.store.played_track_ids()
            n_hot = sum(1 for t in played if t in catalogue.index_of)
            return training.ModelInfo(
                rec_name, name, version, False, None, self.store.play_count(), n_hot, size - n_hot, 0, False, size
            )
        record = self.store.latest_model(rec_name, name, version)
        new = self._new_plays(record)
        if record is None:
            return training.ModelInfo(rec_name, name, version, True, None, 0, 0, size, new, self._is_due(new), size)
        with self._lock:
            cached = self._trained.get((rec_name, name, version))
        if cached is not None and cached.record.id == record.id:
            n_hot = int(cached.align(catalogue).hot_mask.sum())
        else:
            n_hot = min(record.n_hot, size)
        return training.ModelInfo(
            rec_name,
            name,
            version,
            True,
            record.trained_at,
            record.n_plays,
            n_hot,
            size - n_hot,
            new,
            self._is_due(new),
            size,
        )

    def models_info(self, backend: str | None = None) -> dict[str, training.ModelInfo | None]:
        """`model_info` of every registered recommender (None where it cannot be read): the picker's lines."""
        out: dict[str, training.ModelInfo | None] = {}
        for rec_name in recommender_registry.REGISTRY:
            try:
                out[rec_name] = self.model_info(rec_name, backend)
            except Exception:  # noqa: BLE001 - one unreadable model must not hide the others
                out[rec_name] = None
        return out

    def _recent_items(self, index_of: dict[int, int], limit: int = RECENT_PROFILE_PLAYS) -> list[int]:
        """Catalogue items of the most recent positive plays, oldest first, without repeats."""
        items: list[int] = []
        for track_id in self.store.recent_positive_track_ids(limit * 5):
            item = index_of.get(track_id)
            if item is not None and item not in items:
                items.append(item)
            if len(items) == limit:
                break
        return items[::-1]

    def suggest(
        self,
        seed: int | None = None,
        *,
        k: int | None = None,
        backend: str | None = None,
        recommender: str | None = None,
        pool: str = "all",
        session_id: int | None = None,
        tracks: list[int] | None = None,
    ) -> SuggestionList:
        """Next tracks for a seed and the current session (the modes are described at `_suggest`).

        While the selected recommender (``recommender=None``) learns from history and has no
        trained model yet, `FALLBACK_RECOMMENDER` answers and the list's note says so. A
        recommender named explicitly answers as asked or raises `ModelNotTrained`: a comparison
        must never show one model's list under another's name. Once the user applied measured
        winners (`use_winners`), they serve instead of the selected pair.
        """
        if pool not in ("all", "hot", "cold"):
            raise UserError(f"unknown pool {pool!r}", "use all, hot or cold")
        if backend is None and recommender is None and self.served_pairs():
            return self._suggest_with_winners(seed, k=k, pool=pool, session_id=session_id, tracks=tracks)
        return self._suggest_selected(
            seed, k=k, backend=backend, recommender=recommender, pool=pool, session_id=session_id, tracks=tracks
        )

    def _suggest_selected(self, seed, *, k, backend, recommender, pool, session_id, tracks) -> SuggestionList:
        call = {"k": k, "backend": backend, "pool": pool, "session_id": session_id, "tracks": tracks}
        try:
            return self._suggest(seed, recommender=recommender, **call)
        except training.ModelNotTrained as exc:
            if recommender is not None or self.recommender == FALLBACK_RECOMMENDER:
                raise
            untrained = exc.problem
            result = self._suggest(seed, recommender=FALLBACK_RECOMMENDER, **call)
        result.fallback_from = self.recommender
        fallback = f"{untrained}: showing {FALLBACK_RECOMMENDER} meanwhile"
        result.note = f"{fallback}; {result.note}" if result.note else fallback
        return result

    def _suggest(
        self,
        seed: int | None,
        *,
        k: int | None,
        backend: str | None,
        recommender: str | None,
        pool: str,
        session_id: int | None,
        tracks: list[int] | None = None,
    ) -> SuggestionList:
        """Next tracks from one recommender (`tracks`, a playlist or the queue, stands in for the session).

        Modes: "hot" — the recommender on the seed and session; "cold" — `pool="cold"` (the
        cold-start view), or a seed that is cold for the fitted model (not in its training
        interactions; for recommenders fitted on the fly, never played): only tracks cold for
        the model are candidates, all scored through the recommender's audio path, so one
        ranking never mixes learned and audio-only representations; without seed or session
        the profile is the recent plays. "popular" — nothing to go on yet.
        """
        name = backend or self.backend
        rec_name = recommender or self.recommender
        k = k or self.settings.suggestions
        version = self.version(name)
        catalogue = self.catalogue(name)
        seed_track = self.store.track(seed) if seed is not None else None
        if seed is not None and seed_track is None:
            raise UserError(f"no track with id {seed}", "see `mrs-tui library` for ids")
        result = SuggestionList([], name, version, rec_name, "hot", seed=seed_track, pool=pool)
        if len(catalogue) == 0:
            result.note = f"nothing is analysed with {name} yet: index the library first"
            return result
        # `tracks` (a playlist, the queue) stands in for the session as the profile.
        session_tracks = list(tracks) if tracks is not None else self.history.session_tracks(session_id)
        seen = set(session_tracks) if tracks is not None else self.history.session_seen(session_id)
        index_of = catalogue.index_of
        history_items = [index_of[t] for t in session_tracks if t in index_of]
        seed_item = index_of.get(seed) if seed is not None else None
        if seed is not None and seed_item is None:
            result.note = "the selected track is not analysed yet; suggestions use the session only"
        exclude = {index_of[t] for t in seen | ({seed} if seed is not None else set()) if t in index_of}
        # -- hot/cold routing: which model answers, in which mode, over which pool -----------------
        model_name = rec_name
        if not history_items and seed_item is None and pool != "cold":
            model_name = "popular"
            result.mode = "popular"
            model = self.fitted_model(model_name, name)
        else:
            try:
                model = self.fitted_model(rec_name, name)
            except training.ModelDamaged as exc:  # derived files are disposable: serve knn until retrained
                result.note = f"{exc.problem}; {exc.fix}"
                model_name = result.recommender = "knn"
                model = self.fitted_model(model_name, name)
            routing = model.route(Query(history=history_items, seed=seed_item, pool=pool))
            if not routing.supported:  # e.g. a collaborative-only model asked for new tracks: audio answers
                result.note = f"{rec_name} cannot rank tracks it was not trained on; knn ranks them by audio"
                model_name = "knn"
                model = self.fitted_model(model_name, name)
            result.mode, pool = routing.mode, routing.query.pool
            if routing.mode == "cold" and not history_items and seed_item is None:
                history_items = self._recent_items(index_of)
                exclude |= set(history_items)  # played after training: cold for a trained model
                result.basis = "recent"
                if not history_items:
                    result.note = "no plays yet: tracks in library order"
        result.pool = pool
        # -- end of hot/cold routing ------------------------------------------------------------------
        result.candidates = _pool_size(model, pool, len(exclude))
        if seed_item is not None and history_items:
            items, scores = self._blend_seed_and_session(model, history_items, seed_item, pool, exclude, k)
            result.seed_weight = self.settings.seed_weight
        else:
            items, scores = model.recommend(Query(history=history_items, seed=seed_item, pool=pool, exclude=exclude), k)
        result.profile_size = len(history_items) + (seed_item is not None)
        result.items = self._to_suggestions(catalogue, items, scores, result, model_name)
        return result

    # -- the measured winner per mode ----------------------------------------------------------

    def served_pairs(self) -> dict:
        """mode -> `ServedPair` the user applied from an evaluation (empty: the selected pair serves)."""
        with self._lock:
            if self._served is None:
                self._served = self.store.served_pairs()
            return self._served

    def use_winners(self, run_id: int | None = None) -> dict:
        """Serve each mode with the best pair of an evaluation run (default: the latest on this history)."""
        from mrs_tui.comparison import latest_history_run, winners

        run = latest_history_run(self.store, run_id)
        best = winners(run)
        if not best:
            raise UserError(
                f"evaluation run {run.id} has no usable cell to take a winner from",
                "run an evaluation of learned recommenders on your history first (e, or mrs-tui eval)",
            )
        with self.store.write():
            self.store.clear_served_pairs()
            for mode, cell in best.items():
                self.store.set_served_pair(mode, cell.recommender, cell.backend, run.id)
        with self._lock:
            self._served = None
        return self.served_pairs()

    def stop_using_winners(self) -> None:
        self.store.clear_served_pairs()
        with self._lock:
            self._served = None

    def _suggest_with_winners(self, seed, *, k, pool, session_id, tracks) -> SuggestionList:
        """The hot winner answers; where the list turns cold (new files, a cold seed) the cold one does."""
        served = self.served_pairs()
        pair = served.get("cold" if pool == "cold" else "hot") or served.get("hot") or served.get("cold")
        call = {"k": k, "pool": pool, "session_id": session_id, "tracks": tracks}
        cold = served.get("cold")
        try:
            result = self.suggest(seed, backend=pair.backend, recommender=pair.recommender, **call)
            if result.mode == "cold" and cold is not None and cold != pair:
                pair = cold
                result = self.suggest(seed, backend=cold.backend, recommender=cold.recommender, **call)
        except training.ModelNotTrained:
            result = self._suggest_selected(seed, backend=None, recommender=None, **call)
            result.note = f"the winner {pair.recommender} on {pair.backend} is not trained yet (t trains it)"
            return result
        result.served = f"{pair.mode} winner of evaluation #{pair.run_id}"
        return result

    def untrained_winners(self) -> list[tuple[str, str]]:
        """(recommender, backend) of applied winners that learn from history and have no model yet."""
        out = []
        for pair in self.served_pairs().values():
            spec = recommender_registry.get_spec(pair.recommender)
            version = self.version(pair.backend)
            if spec.trainable and self.store.latest_model(pair.recommender, pair.backend, version) is None:
                out.append((pair.recommender, pair.backend))
        return list(dict.fromkeys(out))

    def _blend_seed_and_session(
        self, model: Recommender, history: list[int], seed: int, pool: str, exclude: set[int], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rank by `seed_weight` x the seed's ranking + the rest x the session's ranking.

        Averaging one seed into a session profile lets the session win as soon as it holds a
        track or two; blending the two rankings keeps the seed's share fixed whatever the
        session's length. The score is the blended rank percentile (1: first in both).
        """
        weight = min(1.0, max(0.0, float(self.settings.seed_weight)))
        depth = max(k * 5, 100)
        (by_seed, _), (by_session, _) = model.recommend_batch(
            [Query(seed=seed, pool=pool, exclude=exclude), Query(history=history, pool=pool, exclude=exclude)], depth
        )
        blended: dict[int, float] = {}
        for share, ranking in ((weight, by_seed), (1.0 - weight, by_session)):
            position = {int(item): rank for rank, item in enumerate(ranking)}
            for item in set(position) | set(blended):
                blended[item] = blended.get(item, 0.0) + share * (1.0 - position.get(item, depth) / depth)
        # Ties (equal shares) go to the seed's order.
        seed_rank = {int(item): rank for rank, item in enumerate(by_seed)}
        order = sorted(blended, key=lambda item: (-blended[item], seed_rank.get(item, depth)))[:k]
        return np.asarray(order, np.int64), np.asarray([blended[i] for i in order], np.float32)

    def _to_suggestions(
        self,
        catalogue: Catalogue,
        items: np.ndarray,
        scores: np.ndarray,
        result: SuggestionList,
        model_name: str,
    ) -> list[Suggestion]:
        track_ids = [int(catalogue.track_ids[i]) for i in items]
        tracks = {t.id: t for t in self.store.tracks(ids=track_ids)}
        played = self.store.played_among(track_ids)
        tags = self.tracks_tags(track_ids, result.backend) if model_name != "popular" else {}
        out = []
        for rank, (track_id, score) in enumerate(zip(track_ids, scores, strict=True)):
            track = tracks.get(track_id)
            if track is None:
                continue
            percentile = rank_percentile(rank, result.candidates)
            out.append(
                Suggestion(
                    track,
                    float(score),
                    track_id not in played,
                    self._reason(percentile, result, model_name, tags.get(track_id, [])),
                    percentile,
                )
            )
        return out

    def _reason(self, percentile: float, result: SuggestionList, model_name: str, tags: list[str]) -> str:
        if model_name == "popular":
            return "often played"
        basis = []
        if result.seed is not None:
            basis.append("the selected track")
        session = result.profile_size - (result.seed is not None)
        where = "of your recent plays" if result.basis == "recent" else "of this session"
        if session:
            basis.append(f"{session} track{'s' if session != 1 else ''} {where}")
        text = f"{format_percentile(percentile)} for {' and '.join(basis)}" if basis else format_percentile(percentile)
        if tags:
            text += f" · sounds like {', '.join(tags[:3])}"
        return text

    def tracks_tags(self, track_ids: list[int], backend: str | None = None) -> dict[int, list[str]]:
        """Descriptive tags a backend stored for each track (else MusiCNN's taggram), best first;
        one query per backend however many tracks (a suggestion list's reasons)."""
        out: dict[int, list[str]] = {}
        for name in dict.fromkeys([backend or self.backend, "musicnn"]):
            wanted = [t for t in track_ids if t not in out]
            for track_id, extras in self.store.embedding_extras(wanted, name, self.version(name)).items():
                if extras.get("tags"):
                    out[track_id] = [tag for tag, _ in extras["tags"]]
        return {t: out.get(t, []) for t in track_ids}

    def track_tags(self, track_id: int, backend: str | None = None) -> list[str]:
        """`tracks_tags` of one track."""
        return self.tracks_tags([track_id], backend)[track_id]

    # -- evaluation ------------------------------------------------------------------------------

    def indexed_backends(self, store: Store | None = None) -> list[str]:
        """Backends with at least one stored vector of their current version."""
        from mrs_tui.evaluation.datasets import indexed_backends

        return indexed_backends(store or self.store, self.version)

    def evaluate(
        self,
        settings: EvalSettings,
        *,
        dataset: Dataset | None = None,
        keep: bool = True,
        progress: Callable[[float, float, str], None] | None = None,
        cancel: threading.Event | None = None,
        cells: CellExecutor | None = None,
    ) -> EvalRun:
        """Run the evaluation grid and store the run; safe to call from a worker thread.

        `cells` runs the grid's cells elsewhere (`mrs_tui.cluster.grid.RayCells`), same results.

        Without `dataset`, the play history is evaluated with every backend that analysed the
        library (or `settings.backends`). The session gap is the user's setting. A cancelled run
        is returned with the cells finished so far but never stored: its table is incomplete.
        """
        from mrs_tui.evaluation.datasets import history_dataset
        from mrs_tui.evaluation.runner import run_grid, save_run

        settings = dataclasses.replace(settings, session_gap_minutes=self.settings.session_gap_minutes)
        store = self._worker_store()
        try:
            if dataset is None:
                backends = settings.backends or self.indexed_backends(store)
                if not backends:
                    raise UserError("no backend has analysed the library yet", "run mrs-tui index FOLDER first")
                dataset = history_dataset(store, backends, self.version)
                settings = dataclasses.replace(settings, backends=list(backends))
            run = run_grid(dataset, settings, progress=progress, cancel=cancel, cells=cells)
            if keep and not run.cancelled:
                save_run(store, run)
            return run
        finally:
            if store is not self.store:
                store.close()


def _pool_size(model: Recommender, pool: str, n_excluded: int) -> int:
    hot = model.hot_mask
    if pool == "all" or hot is None:
        size = model.n_items
    else:
        size = int(np.count_nonzero(hot if pool == "hot" else ~np.asarray(hot, bool)))
    return max(1, size - n_excluded)


def rank_percentile(rank: int, candidates: int) -> float:
    """The share of candidates ranked below: first of 20 is the 95th percentile ("top 5%")."""
    candidates = max(candidates, rank + 1)
    return 100.0 * (candidates - rank - 1) / candidates


def format_percentile(percentile: float) -> str:
    """ "top 5%": a number a person can compare across recommenders, unlike raw scores."""
    top = 100.0 - percentile
    return f"top {top:.0f}%" if top >= 1 else f"top {top:.1f}%"
