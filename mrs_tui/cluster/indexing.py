"""Indexing on a Ray cluster: the same steps as `mrs_tui.indexing`, spread over machines.

- The pending work comes from the store (`Indexer.todo`: tracks without a stored result for the
  backend and version), so a killed driver resumes where the database says it stopped.
- Decoding, excerpt cutting and resampling run as CPU tasks (`decode_for` and `excerpt_for`, the
  indexer's own functions); a task returns a small status to the driver and the waveforms to
  the object store, so audio goes from the decoding worker to the embedding actor directly.
- Embedding runs in a pool of actors per backend, each with one loaded model (`analyse_batch`,
  the indexer's own function): one GPU each where the cluster has GPUs and the backend is a
  neural model, one CPU each otherwise; batches are as large as the backend asks.
- The driver is the only writer: it stores each batch of results as it arrives
  (`Store.put_embeddings`) and never stores a (track, backend) twice.
- A killed worker or node: Ray retries its decoding tasks, restarts the actor and retries the
  batch it was embedding. At most `max_in_flight` tracks are between "sent" and "stored", which
  bounds memory on the driver and in the object store, shipped audio included.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends import embedding_version, get_spec
from mrs_tui.cluster import ClusterOptions, alive_node_ids, connect, describe_error, node_labels
from mrs_tui.errors import UserError
from mrs_tui.indexing import (
    BackendProgress,
    Indexer,
    IndexProgress,
    IndexReport,
    NodeProgress,
    ProgressFn,
    analyse_batch,
    decode_for,
    excerpt_for,
)
from mrs_tui.store import EmbeddingRow, Store, Track

DECODE_CPUS = 1.0
RETRIES = 4  # per decoding task, per actor restart and per batch call
CALLS_PER_ACTOR = 2  # one embedding, one waiting: the actor never idles between batches
READY_TIMEOUT_S = 600.0  # loading a model (or waiting for room for its actor) longer than this is a failure


@dataclass(frozen=True)
class BackendPlan:
    """A backend as the driver knows it: no model loaded here, only what decides the work."""

    name: str
    version: str
    sample_rate: int
    clip_seconds: float | None
    options: dict = field(default_factory=dict)
    weights: str | None = None  # a folder on every node; None: each node's own weights cache
    neural: bool = True  # worth a GPU

    @classmethod
    def of(cls, name: str, options: dict | None = None, weights: str | None = None) -> BackendPlan:
        spec = get_spec(name)
        options = dict(options or {})
        return cls(
            name,
            embedding_version(name, **options),
            spec.sample_rate,
            spec.clip_seconds,
            options,
            weights,
            neural=spec.needs_weights,
        )


# -- what runs on the workers ---------------------------------------------------------------


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _can_read(path: str) -> str | None:
    """None when this node can read `path`, else why not."""
    try:
        with open(path, "rb") as f:
            f.read(16)
    except FileNotFoundError:
        return "no such file on that node"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _decode_track(
    track: Track, plans: Sequence[BackendPlan], clip_position: str, audio: bytes | None
) -> tuple[tuple[str, str | None, float], dict]:
    """((node, error, seconds), {backend: waveform}): one decode, each backend's excerpt at its rate."""
    if audio is None:
        decoded, error, seconds = decode_for(track, plans, clip_position)
    else:  # shipped: the decoders want a file (its suffix picks libsndfile or FFmpeg)
        from mrs_tui.paths import cache_dir

        folder = cache_dir() / "cluster-audio"
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{track.id}-{_node_id()[:8]}{Path(track.path).suffix}"
        try:
            copy.write_bytes(audio)
            decoded, error, seconds = decode_for(track, plans, clip_position, path=str(copy))
        finally:
            copy.unlink(missing_ok=True)
    waves = {} if decoded is None else {p.name: excerpt_for(track, decoded, p, clip_position) for p in plans}
    return (_node_id(), error, seconds), waves


class _Embedder:
    """One loaded model on one worker."""

    def __init__(self, plan: BackendPlan, device: str | None) -> None:
        from backends import load_backend

        options = dict(plan.options)
        if device is not None:
            options["device"] = device
        self.backend = load_backend(plan.name, plan.weights, **options)

    def ready(self) -> tuple[str, int | None, str]:
        return _node_id(), getattr(self.backend, "batch_size", None), self.backend.version

    def embed(self, track_ids: list[int], *waves: dict) -> tuple[str, list[EmbeddingRow]]:
        waveforms = [w[self.backend.name] for w in waves]
        return _node_id(), analyse_batch(self.backend, track_ids, waveforms)


# -- the driver -----------------------------------------------------------------------------


class ClusterIndexer:
    """`Indexer.run` on a Ray cluster, with the same report and progress."""

    def __init__(
        self,
        store: Store,
        plans: Sequence[BackendPlan],
        options: ClusterOptions,
        *,
        batch_size: int = 8,
        clip_position: str = "middle",
    ) -> None:
        self.store = store
        self.plans = list(plans)
        self.options = options
        self.planner = Indexer(store, self.plans, batch_size=batch_size, clip_position=clip_position)  # type: ignore[arg-type]

    def run(
        self,
        track_ids: Sequence[int] | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> IndexReport:
        work = self.planner.todo(track_ids)
        report = IndexReport(total=len(work), embedded={p.name: 0 for p in self.plans})
        report.embed_seconds = {p.name: 0.0 for p in self.plans}
        if not work:
            return report
        with connect(self.options) as ray:
            _Run(ray, self, work, report, progress, cancel).execute()
        return report


@dataclass
class _Batch:
    backend: str
    actor: int
    tracks: list[Track]


class _Run:
    """The state of one cluster run: what is decoding, queued, embedding, stored."""

    def __init__(self, ray: Any, indexer: ClusterIndexer, work, report: IndexReport, progress, cancel) -> None:
        self.ray = ray
        self.indexer = indexer
        self.store = indexer.store
        self.plans = {p.name: p for p in indexer.plans}
        self.work = deque(work)
        self.report = report
        self.progress = progress
        self.cancel = cancel
        self.clip_position = indexer.planner.clip_position
        self.needed = {name: sum(p in wanted for _, wanted in work) for name, p in self.plans.items()}
        self.stored = dict.fromkeys(self.plans, 0)
        self.left: dict[int, set[str]] = {}  # track id -> backends still to store
        self.written: set[tuple[int, str]] = set()
        self.decodes: dict[Any, tuple[Track, list[BackendPlan], Any, Any]] = {}
        self.queues: dict[str, list[tuple[Track, Any]]] = {name: [] for name in self.plans}
        self.calls: dict[Any, _Batch] = {}
        self.actors: dict[str, list[Any]] = {}
        self.busy: dict[str, list[int]] = {}
        self.batch: dict[str, int] = {}
        self.labels: dict[str, str] = {}
        self.decoded_on: dict[str, int] = {}
        self.embedded_on: dict[str, int] = {}
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()

    # -- set-up ---------------------------------------------------------------------------

    def execute(self) -> None:
        self.decode = self.ray.remote(num_cpus=DECODE_CPUS, num_returns=2, max_retries=RETRIES)(_decode_track)
        self.labels = node_labels(self.ray)
        if not self.indexer.options.ship_audio:
            self._check_access(self.work[0][0].path)
        try:
            self._start_actors()
            self._loop()
        finally:
            self._stop()
        self.report.seconds = time.perf_counter() - self.started
        self._progress("")

    def _label(self, node: str) -> str:
        if node not in self.labels:
            self.labels = node_labels(self.ray)
        return self.labels.get(node, node[:8])

    def _check_access(self, path: str) -> None:
        """Every node reads the library itself: try one file on each, and name those that cannot."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(num_cpus=0)(_can_read)
        nodes = alive_node_ids(self.ray)
        answers = self.ray.get(
            [
                probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(path)
                for node in nodes
            ]
        )
        refused = [f"{self._label(node)} ({why})" for node, why in zip(nodes, answers, strict=True) if why]
        if refused:
            raise UserError(
                f"{len(refused)} of {len(nodes)} cluster nodes cannot read {path}: {', '.join(refused)}",
                "put the library on storage every node mounts at the same path, "
                "or pass --ship-audio to send the audio from this machine",
            )

    def _start_actors(self) -> None:
        resources = self.ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        on_gpu = {name for name, p in self.plans.items() if p.neural and gpus >= 1}
        embedder = self.ray.remote(_Embedder)
        wanted = self.indexer.options.actors
        for name, plan in self.plans.items():
            if name in on_gpu:
                count = wanted or max(1, gpus // len(on_gpu))
                actor_options = {"num_gpus": 1, "num_cpus": 1}
            else:
                count = wanted or max(1, int(cpus - DECODE_CPUS) // max(1, len(self.plans) - len(on_gpu)))
                actor_options = {"num_cpus": 1}
            if self.indexer.options.actor_resources:
                actor_options["resources"] = dict(self.indexer.options.actor_resources)
            count = max(1, min(count, self.needed[name]))
            self.actors[name] = [
                embedder.options(max_restarts=RETRIES, max_task_retries=RETRIES, **actor_options).remote(
                    plan, "cuda" if name in on_gpu else None
                )
                for _ in range(count)
            ]
            self.busy[name] = [0] * count
        for name, actors in self.actors.items():
            try:
                answers = self.ray.get([a.ready.remote() for a in actors], timeout=READY_TIMEOUT_S)
            except self.ray.exceptions.GetTimeoutError:
                raise UserError(
                    f"the cluster found no room for {len(actors)} {name} workers in {READY_TIMEOUT_S:.0f} s",
                    "add nodes, or free CPUs/GPUs on the cluster",
                ) from None
            except self.ray.exceptions.RayActorError as exc:
                raise UserError(
                    f"a cluster node could not load the {name} backend: {describe_error(exc)}",
                    f"every node needs the weights: run `mrs-tui backends fetch {name}` on each",
                ) from None
            preferred = {batch for _node, batch, _version in answers}.pop()
            for node, _batch, version in answers:
                if version != self.plans[name].version:
                    raise UserError(
                        f"node {self._label(node)} computes {name} version {version}, this machine "
                        f"{self.plans[name].version}",
                        "install the same mrs-tui version on every node",
                    )
            self.batch[name] = self.indexer.planner._batch_size(_Preferred(preferred))

    # -- the loop -------------------------------------------------------------------------

    def _in_flight_limit(self) -> int:
        if self.indexer.options.max_in_flight:
            return max(1, self.indexer.options.max_in_flight)
        slots = sum(len(a) * self.batch[n] * CALLS_PER_ACTOR for n, a in self.actors.items())
        cpus = float(self.ray.cluster_resources().get("CPU", 1))
        return max(4, slots + 2 * int(cpus))

    def _loop(self) -> None:
        self.limit = self._in_flight_limit()
        self._progress("")
        while self.work or self.decodes or self.calls or any(self.queues.values()):
            if self.cancel is not None and self.cancel.is_set():
                self.report.cancelled = True
                return
            while self.work and len(self.left) < self.limit:
                self._submit_decode(*self.work.popleft())
            self._dispatch()
            waiting = [*self.decodes, *self.calls]
            if not waiting:
                continue
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=0.25)
            for ref in ready:
                if ref in self.decodes:
                    self._decoded(ref)
                else:
                    self._embedded(ref)

    def _submit_decode(self, track: Track, wanted: list) -> None:
        audio_ref = None
        if self.indexer.options.ship_audio:
            try:
                audio_ref = self.ray.put(Path(track.path).read_bytes())
            except FileNotFoundError:
                self._track_failed(track, wanted, "file not found")
                return
            except OSError as exc:
                self._track_failed(track, wanted, f"cannot read file: {exc.strerror}")
                return
        status, waves = self.decode.remote(track, list(wanted), self.clip_position, audio_ref)
        self.left[track.id] = {p.name for p in wanted}
        self.decodes[status] = (track, list(wanted), waves, audio_ref)

    def _decoded(self, ref: Any) -> None:
        track, wanted, waves, _audio = self.decodes.pop(ref)
        try:
            node, error, seconds = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            raise UserError(
                f"the cluster lost the decoding of {track.path}: {describe_error(exc)}",
                "what was stored is kept: run the same command again to resume",
            ) from None
        self.report.decode_seconds += seconds
        self.decoded_on[self._label(node)] = self.decoded_on.get(self._label(node), 0) + 1
        if error is not None:
            del self.left[track.id]
            self._track_failed(track, wanted, error)
            return
        for plan in wanted:
            self.queues[plan.name].append((track, waves))

    def _track_failed(self, track: Track, wanted: list, error: str) -> None:
        self.store.update_track(track.id, status="failed", error=error)
        self.report.failed.append((track.path, error))
        self.failed += 1
        self.done += 1
        for plan in wanted:
            self.stored[plan.name] += 1
        self._progress(track.path)

    def _dispatch(self) -> None:
        """Hand queued waveforms to free actors: full batches, or what is queued once no more can come."""
        decoding = {p.name for _t, wanted, _w, _a in self.decodes.values() for p in wanted}
        more_to_send = bool(self.work) and len(self.left) < self.limit
        for name, queue in self.queues.items():
            size = self.batch[name]
            busy = self.busy[name]
            while queue and (len(queue) >= size or not (more_to_send or name in decoding)):
                actor = min(range(len(busy)), key=busy.__getitem__)
                if busy[actor] >= CALLS_PER_ACTOR:
                    break
                taken, queue[:] = queue[:size], queue[size:]
                tracks = [t for t, _ in taken]
                ref = self.actors[name][actor].embed.remote([t.id for t in tracks], *[w for _, w in taken])
                busy[actor] += 1
                self.calls[ref] = _Batch(name, actor, tracks)

    def _embedded(self, ref: Any) -> None:
        batch = self.calls.pop(ref)
        self.busy[batch.backend][batch.actor] -= 1
        try:
            node, rows = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            raise UserError(
                f"the cluster lost a batch of {len(batch.tracks)} tracks for {batch.backend}: {describe_error(exc)}",
                "what was stored is kept: run the same command again to resume",
            ) from None
        rows = [r for r in rows if (r.track_id, r.backend) not in self.written]
        self.store.put_embeddings(rows)
        self.written.update((r.track_id, r.backend) for r in rows)
        label = self._label(node)
        self.embedded_on[label] = self.embedded_on.get(label, 0) + len(rows)
        paths = {t.id: t.path for t in batch.tracks}
        self.report.embedded[batch.backend] += sum(r.vector is not None for r in rows)
        self.report.embed_seconds[batch.backend] += sum(r.seconds or 0.0 for r in rows)
        self.report.backend_failures += [(paths[r.track_id], r.backend, r.error) for r in rows if r.vector is None]
        self.stored[batch.backend] += len(rows)
        for track in batch.tracks:
            left = self.left.get(track.id)
            if left is None:
                continue
            left.discard(batch.backend)
            if not left:
                del self.left[track.id]
                self.done += 1
        self._progress(batch.tracks[-1].path)

    def _stop(self) -> None:
        for ref in [*self.decodes, *self.calls]:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        for actors in self.actors.values():
            for actor in actors:
                with contextlib.suppress(Exception):
                    self.ray.kill(actor, no_restart=True)
        self.decodes.clear()
        self.calls.clear()

    def _nodes(self) -> tuple[NodeProgress, ...]:
        return tuple(
            NodeProgress(label, self.decoded_on.get(label, 0), self.embedded_on.get(label, 0))
            for label in sorted(set(self.decoded_on) | set(self.embedded_on))
        )

    def _progress(self, current: str) -> None:
        self.report.nodes = self._nodes()
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        # Wall time, not summed compute: the actors work in parallel, and the ETA follows the wall clock.
        backends = tuple(BackendProgress(name, self.stored[name], self.needed[name], elapsed) for name in self.plans)
        self.progress(
            IndexProgress(
                self.done, self.report.total, self.failed, elapsed, current, backends=backends, nodes=self.report.nodes
            )
        )


@dataclass(frozen=True)
class _Preferred:
    batch_size: int | None
