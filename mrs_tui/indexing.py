"""Analysing tracks: decode once, fan out to every selected backend, store as we go.

For each track the indexer works out the excerpt each backend needs, decodes the union of
those windows once at the file's own rate, resamples once per distinct target rate, and
queues the waveform for each backend. A backend embeds a batch when `batch_size` waveforms
are queued; results are committed batch by batch, so a cancelled or killed run loses at
most one batch and the next run starts where this one stopped (tracks with a stored vector
or failure for a model are never recomputed).

Decoding and resampling run ahead of analysis in a small pool of helper threads
(libsndfile, FFmpeg and soxr release the GIL): a bounded pipeline that keeps up to one batch
plus one track per decoder decoded ahead, so while a backend embeds a batch the decoders are
already filling the next one. With a single track ahead, as before, the decoder sat idle
during every batch and the next batch's tracks were then decoded one by one while the
backend waited. Memory stays bounded: at most `batch_size` waveforms per backend plus the
tracks decoded ahead (`prefetch_depth`) are alive at any time. Progress reports both stages:
`IndexProgress.decoded` (audio ready) and the tracks analysed per backend.

`decode_workers` and `torch_threads` split the machine between the two stages; the defaults
are what bench/bench_index_pipeline.py measured best on a 2-core machine (see there).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from backends import MAX_TRACK_SECONDS, Backend
from mrs_tui.audio import DecodedAudio, decode_excerpt, excerpt_window
from mrs_tui.errors import AudioDecodeError
from mrs_tui.store import EmbeddingRow, Store, Track


@dataclass(frozen=True)
class BackendProgress:
    """One backend's share of a run: tracks stored (vectors or failures) of those it needs."""

    name: str
    done: int
    total: int
    seconds: float  # time spent in this backend so far

    @property
    def eta(self) -> float | None:
        """Seconds left at this backend's own pace (slow models dominate a multi-backend run)."""
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) * self.seconds / self.done if self.done else None


@dataclass(frozen=True)
class NodeProgress:
    """One machine's share of a cluster run (mrs_tui.cluster): tracks decoded and results embedded there."""

    node: str
    decoded: int
    embedded: int


@dataclass
class IndexProgress:
    done: int
    total: int
    failed: int
    elapsed: float
    current: str = ""
    backends: tuple[BackendProgress, ...] = ()
    nodes: tuple[NodeProgress, ...] = ()  # cluster runs only
    # Tracks whose audio is decoded (or found unreadable), counting those still waiting for a
    # backend: the first stage of the pipeline. 0 where a runner does not report it.
    decoded: int = 0

    @property
    def analysed(self) -> int:
        """Tracks every backend is done with (the second stage); `done` counts tracks handed over."""
        return min((b.done for b in self.backends), default=self.done)

    def describe_stages(self) -> str:
        """ "decoded 40/60 · analysed 32/60": both stages of the pipeline."""
        return f"decoded {max(self.decoded, self.done)}/{self.total} · analysed {self.analysed}/{self.total}"

    @property
    def rate(self) -> float:
        """Tracks per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left: the slowest backend's own estimate once each has stored something."""
        estimates = [b.eta for b in self.backends]
        if estimates and all(e is not None for e in estimates):
            return max(estimates)
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def describe_backends(self) -> str:
        """ "mfcc 40/60 ETA 0:03 · musicnn 12/60 ETA 1:10", for runs over several backends."""
        parts = []
        for b in self.backends:
            eta = b.eta
            when = "" if eta is None else f" ETA {int(eta) // 60}:{int(eta) % 60:02d}"
            parts.append(f"{b.name} {b.done}/{b.total}{when}")
        return " · ".join(parts)

    def describe_nodes(self) -> str:
        return describe_nodes(self.nodes)


def describe_nodes(nodes: Sequence[NodeProgress]) -> str:
    """ "10.0.0.5 decoded 40, embedded 38 · 10.0.0.6 decoded 41", for cluster runs."""
    parts = []
    for n in nodes:
        counts = [f"{label} {count}" for label, count in (("decoded", n.decoded), ("embedded", n.embedded)) if count]
        parts.append(f"{n.node} {', '.join(counts)}")
    return " · ".join(parts)


@dataclass
class IndexReport:
    total: int = 0
    embedded: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    backend_failures: list[tuple[str, str, str]] = field(default_factory=list)  # (path, backend, reason)
    cancelled: bool = False
    elsewhere: int = 0  # tracks another indexer was analysing at the same time
    seconds: float = 0.0
    decode_seconds: float = 0.0
    embed_seconds: dict[str, float] = field(default_factory=dict)
    nodes: tuple[NodeProgress, ...] = ()  # cluster runs: what each machine did

    def summary(self) -> str:
        done = ", ".join(f"{n} with {b}" for b, n in self.embedded.items()) or "nothing to do"
        text = f"analysed {done} in {self.seconds:.1f} s"
        if self.failed:
            text += f"; {len(self.failed)} unreadable"
        if self.backend_failures:
            text += f"; {len(self.backend_failures)} backend errors"
        if self.elsewhere:
            text += f"; {self.elsewhere} analysed by another indexer running at the same time"
        return text + (" (cancelled; run again to resume)" if self.cancelled else "")


ProgressFn = Callable[[IndexProgress], None]


# Decoder threads and tracks decoded ahead: bench/bench_index_pipeline.py chose them (2 cores).
DECODE_WORKERS = 1
MAX_PREFETCH = 16  # a whole-track backend's excerpt can be 100 MB: the depth needs a ceiling


@dataclass
class _Pending:
    track: Track
    waveform: np.ndarray


class Indexer:
    def __init__(
        self,
        store: Store,
        backends: Sequence[Backend],
        *,
        batch_size: int = 8,
        clip_position: str = "middle",
        decode_workers: int = DECODE_WORKERS,
        torch_threads: int | None = None,
        prefetch: int | None = None,
    ) -> None:
        self.store = store
        self.backends = list(backends)
        self.batch_size = max(1, batch_size)
        self.clip_position = clip_position
        self.decode_workers = max(1, decode_workers)
        self.torch_threads = torch_threads  # None: leave torch's own setting
        self.prefetch = prefetch  # tracks decoded ahead; None: `prefetch_depth` decides

    @property
    def prefetch_depth(self) -> int:
        """Tracks decoded ahead of analysis: the largest batch plus one per decoder, bounded."""
        if self.prefetch is not None:
            return max(1, self.prefetch)
        largest = max((self._batch_size(b) for b in self.backends), default=1)
        return min(MAX_PREFETCH, largest + self.decode_workers)

    def todo(self, track_ids: Sequence[int] | None = None) -> list[tuple[Track, list[Backend]]]:
        """Tracks that still need at least one backend, with the backends they need."""
        needs: dict[int, tuple[Track, list[Backend]]] = {}
        for backend in self.backends:
            for track in self.store.tracks_needing(backend.name, backend.version, ids=track_ids):
                needs.setdefault(track.id, (track, []))[1].append(backend)
        return sorted(needs.values(), key=lambda item: item[0].path)

    def run(
        self,
        track_ids: Sequence[int] | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> IndexReport:
        work = self.todo(track_ids)
        needed = {b.name: sum(b in wanted for _, wanted in work) for b in self.backends}
        report = IndexReport(total=len(work), embedded={b.name: 0 for b in self.backends})
        report.embed_seconds = {b.name: 0.0 for b in self.backends}
        queues: dict[str, list[_Pending]] = {b.name: [] for b in self.backends}
        started = time.perf_counter()
        failed = 0
        stored = dict.fromkeys(needed, 0)

        def per_backend() -> tuple[BackendProgress, ...]:
            return tuple(
                BackendProgress(name, stored[name], needed[name], report.embed_seconds[name]) for name in needed
            )

        def next_claimed(start: int) -> int | None:
            """The first track from `start` on that this run wins some analysis of (see Store.claim)."""
            for position in range(start, len(work)):
                track, wanted = work[position]
                won = self.store.claim(track.id, [(b.name, b.version) for b in wanted])
                for i, backend in enumerate(wanted):
                    if i not in won:  # another indexer is analysing it now
                        stored[backend.name] += 1
                if won:
                    work[position] = (track, [wanted[i] for i in won])
                    return position
                report.elsewhere += 1
            return None

        decoded_count = 0
        count_lock = threading.Lock()

        def decode_counted(track: Track, wanted: list[Backend]):
            nonlocal decoded_count
            result = self._decode(track, wanted)
            with count_lock:
                decoded_count += 1
            return result

        def progress_event(done: int, current: str = "", seconds: float | None = None) -> IndexProgress:
            elapsed = time.perf_counter() - started if seconds is None else seconds
            return IndexProgress(
                done, len(work), failed, elapsed, current, per_backend(), decoded=min(decoded_count, len(work))
            )

        if progress:
            progress(progress_event(0, seconds=0.0))
        ahead: deque[tuple[int, Future]] = deque()
        try:
            with (
                self._torch_threads(),
                ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="decode") as pool,
            ):
                scheduled = 0  # the position from which the next track to decode is looked for

                def fill() -> None:
                    nonlocal scheduled
                    while len(ahead) < self.prefetch_depth and scheduled is not None:
                        found = next_claimed(scheduled)
                        if found is None:
                            scheduled = None
                            return
                        ahead.append((found, pool.submit(decode_counted, *work[found])))
                        scheduled = found + 1

                fill()
                while ahead:
                    if cancel is not None and cancel.is_set():
                        report.cancelled = True
                        break
                    position, future = ahead.popleft()
                    track, wanted = work[position]
                    decoded, error, decode_time = future.result()
                    fill()  # keep the decoders busy while this track's batch is embedded
                    report.decode_seconds += decode_time
                    if error is not None:
                        self.store.update_track(track.id, status="failed", error=error)
                        report.failed.append((track.path, error))
                        failed += 1
                        for backend in wanted:  # nothing left to do for it, in any backend
                            stored[backend.name] += 1
                    else:
                        for backend, (_start, waveform) in zip(wanted, self._cut(track, decoded, wanted), strict=True):
                            queues[backend.name].append(_Pending(track, waveform))
                            if len(queues[backend.name]) >= self._batch_size(backend):
                                stored[backend.name] += self._flush(backend, queues[backend.name], report)
                    if progress:
                        progress(progress_event(position + 1, track.path))
                for _position, future in ahead:
                    future.cancel()
                # On cancel, queued waveforms are dropped unembedded: a batch of a slow backend can take
                # minutes, and nothing was stored for them, so the next run simply picks them up.
                if not report.cancelled:
                    for backend in self.backends:
                        stored[backend.name] += self._flush(backend, queues[backend.name], report)
        finally:
            self.store.release_claims()
        report.seconds = time.perf_counter() - started
        if progress and work:
            progress(progress_event(len(work), seconds=report.seconds))
        return report

    @contextlib.contextmanager
    def _torch_threads(self) -> Iterator[None]:
        """torch's intra-op threads set to `torch_threads` for the run (only if torch is in use)."""
        import sys

        torch = sys.modules.get("torch")  # a backend that needs torch has imported it; mfcc does not
        if self.torch_threads is None or torch is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, self.torch_threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- steps -------------------------------------------------------------------------------

    def excerpts(self, track: Track, wanted: Sequence[Backend]) -> list[tuple[float, np.ndarray]]:
        """The (start, waveform) each of `wanted` analyses for `track`: decoded once, cut, resampled.

        The path `run` takes, for one file outside a run (`mrs-tui embed`); raises
        `AudioDecodeError` when the file cannot be read.
        """
        decoded, error, _seconds = self._decode(track, list(wanted))
        if error is not None:
            raise AudioDecodeError(error)
        return self._cut(track, decoded, wanted)

    def _cut(self, track: Track, decoded: DecodedAudio, wanted: Sequence[Backend]) -> list[tuple[float, np.ndarray]]:
        out = []
        for backend in wanted:
            start, seconds = analysis_window(track, decoded, backend, self.clip_position)
            out.append((start, decoded.window(backend.sample_rate, start, seconds)))
        return out

    def _batch_size(self, backend: Backend) -> int:
        preferred = getattr(backend, "batch_size", None)
        return max(1, min(self.batch_size, preferred)) if preferred else self.batch_size

    def _decode(self, track: Track, wanted: list[Backend]) -> tuple[DecodedAudio | None, str | None, float]:
        return decode_for(track, wanted, self.clip_position)

    def _flush(self, backend: Backend, queue: list[_Pending], report: IndexReport) -> int:
        """Embed and store what is queued for `backend`; returns how many results were stored."""
        if not queue:
            return 0
        started = time.perf_counter()
        rows = analyse_batch(backend, [p.track.id for p in queue], [p.waveform for p in queue])
        by_id = {p.track.id: p.track.path for p in queue}
        report.backend_failures += [(by_id[r.track_id], backend.name, r.error) for r in rows if r.vector is None]
        self.store.put_embeddings(rows)
        report.embedded[backend.name] += sum(r.vector is not None for r in rows)
        report.embed_seconds[backend.name] += time.perf_counter() - started
        queue.clear()
        return len(rows)


# -- the steps as functions: the cluster runner (mrs_tui.cluster) calls the same ones ----------


class ClipShape(Protocol):
    """What cutting an excerpt needs to know of a backend (a `Backend` or its `BackendSpec`)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def clip_seconds(self) -> float | None: ...


def analysis_window(
    track: Track, decoded: DecodedAudio | None, backend: ClipShape, clip_position: str
) -> tuple[float, float | None]:
    """(start, seconds) of the excerpt `backend` analyses in `track`."""
    duration = track.duration if track.duration and track.duration > 0 else None
    if duration is None and decoded is not None:
        duration = decoded.offset + decoded.duration
    clip = backend.clip_seconds if backend.clip_seconds is not None else MAX_TRACK_SECONDS
    return excerpt_window(duration, clip, clip_position)


def decode_for(
    track: Track, wanted: Sequence[ClipShape], clip_position: str, path: str | None = None
) -> tuple[DecodedAudio | None, str | None, float]:
    """Decode once the union of the windows `wanted` need: (audio, error, seconds spent).

    `path` reads the audio from another file than `track.path` (a copy shipped to a worker).
    """
    started = time.perf_counter()
    windows = [analysis_window(track, None, b, clip_position) for b in wanted]
    start = min(w[0] for w in windows)
    ends = [w[0] + w[1] if w[1] is not None else None for w in windows]
    seconds = None if any(e is None for e in ends) else max(ends) - start
    try:
        decoded = decode_excerpt(path or track.path, start, seconds)
    except AudioDecodeError as exc:
        return None, str(exc), time.perf_counter() - started
    except Exception as exc:
        return None, f"decoding failed: {type(exc).__name__}: {exc}", time.perf_counter() - started
    return decoded, None, time.perf_counter() - started


def excerpt_for(track: Track, decoded: DecodedAudio, backend: ClipShape, clip_position: str) -> np.ndarray:
    """The waveform `backend` analyses: its window of `decoded`, at its sample rate."""
    start, seconds = analysis_window(track, decoded, backend, clip_position)
    return decoded.window(backend.sample_rate, start, seconds)


def analyse_batch(backend: Backend, track_ids: Sequence[int], waveforms: Sequence[np.ndarray]) -> list[EmbeddingRow]:
    """One result row per track (a vector, or the error); a failing batch is retried one by one."""
    return [_finite_or_failure(row) for row in _analyse(backend, track_ids, waveforms)]


def _finite_or_failure(row: EmbeddingRow) -> EmbeddingRow:
    """A vector with NaN or infinite values would poison every search: store it as a failure."""
    if row.vector is None or np.isfinite(row.vector).all():
        return row
    reason = f"{row.backend} returned NaN or infinite values for this track"
    return EmbeddingRow(row.track_id, row.backend, row.version, None, error=reason)


def _analyse(backend: Backend, track_ids: Sequence[int], waveforms: Sequence[np.ndarray]) -> list[EmbeddingRow]:
    """One call for the batch; when it fails, each track alone, so one bad track fails by itself."""

    def row(track_id: int, analysis, seconds: float) -> EmbeddingRow:
        vector = analysis.vector.astype(np.float32)
        return EmbeddingRow(track_id, backend.name, backend.version, vector, extras=analysis.extras, seconds=seconds)

    started = time.perf_counter()
    try:
        analyses = backend.analyze(list(waveforms))
        per_item = (time.perf_counter() - started) / len(waveforms)
        return [row(track_id, a, per_item) for track_id, a in zip(track_ids, analyses, strict=True)]
    except Exception:
        rows: list[EmbeddingRow] = []
        for track_id, waveform in zip(track_ids, waveforms, strict=True):
            one = time.perf_counter()
            try:
                (analysis,) = backend.analyze([waveform])
                rows.append(row(track_id, analysis, time.perf_counter() - one))
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                rows.append(EmbeddingRow(track_id, backend.name, backend.version, None, error=reason))
        return rows
