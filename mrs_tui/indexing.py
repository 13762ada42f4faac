"""Analysing tracks: decode once, fan out to every selected backend, store as we go.

For each track the indexer works out the excerpt each backend needs, decodes the union of
those windows once at the file's own rate, resamples once per distinct target rate, and
queues the waveform for each backend. A backend embeds a batch when `batch_size` waveforms
are queued; results are committed batch by batch, so a cancelled or killed run loses at
most one batch and the next run starts where this one stopped (tracks with a stored vector
or failure for a model are never recomputed).

Decoding runs one track ahead in a helper thread (libsndfile, FFmpeg and soxr release the
GIL), so the backend is rarely waiting for audio. Memory stays flat: at most
`batch_size` waveforms per backend plus the prefetched track are alive at any time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

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


@dataclass
class IndexProgress:
    done: int
    total: int
    failed: int
    elapsed: float
    current: str = ""
    backends: tuple[BackendProgress, ...] = ()

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


@dataclass
class IndexReport:
    total: int = 0
    embedded: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    backend_failures: list[tuple[str, str, str]] = field(default_factory=list)  # (path, backend, reason)
    cancelled: bool = False
    seconds: float = 0.0
    decode_seconds: float = 0.0
    embed_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        done = ", ".join(f"{n} with {b}" for b, n in self.embedded.items()) or "nothing to do"
        text = f"analysed {done} in {self.seconds:.1f} s"
        if self.failed:
            text += f"; {len(self.failed)} unreadable"
        if self.backend_failures:
            text += f"; {len(self.backend_failures)} backend errors"
        return text + (" (cancelled; run again to resume)" if self.cancelled else "")


ProgressFn = Callable[[IndexProgress], None]


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
    ) -> None:
        self.store = store
        self.backends = list(backends)
        self.batch_size = max(1, batch_size)
        self.clip_position = clip_position

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

        if progress:
            progress(IndexProgress(0, len(work), 0, 0.0, backends=per_backend()))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            ahead: Future | None = pool.submit(self._decode, *work[0]) if work else None
            for position, (track, wanted) in enumerate(work):
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    break
                decoded, error, decode_time = ahead.result()
                ahead = pool.submit(self._decode, *work[position + 1]) if position + 1 < len(work) else None
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
                    elapsed = time.perf_counter() - started
                    progress(IndexProgress(position + 1, len(work), failed, elapsed, track.path, per_backend()))
            if ahead is not None:
                ahead.cancel()
        # On cancel, queued waveforms are dropped unembedded: a batch of a slow backend can take
        # minutes, and nothing was stored for them, so the next run simply picks them up.
        if not report.cancelled:
            for backend in self.backends:
                stored[backend.name] += self._flush(backend, queues[backend.name], report)
        report.seconds = time.perf_counter() - started
        if progress and work:
            progress(IndexProgress(len(work), len(work), failed, report.seconds, "", per_backend()))
        return report

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
            start, seconds = self._window(track, decoded, backend)
            out.append((start, decoded.window(backend.sample_rate, start, seconds)))
        return out

    def _batch_size(self, backend: Backend) -> int:
        preferred = getattr(backend, "batch_size", None)
        return max(1, min(self.batch_size, preferred)) if preferred else self.batch_size

    def _window(self, track: Track, decoded: DecodedAudio | None, backend: Backend) -> tuple[float, float | None]:
        duration = track.duration if track.duration and track.duration > 0 else None
        if duration is None and decoded is not None:
            duration = decoded.offset + decoded.duration
        clip = backend.clip_seconds if backend.clip_seconds is not None else MAX_TRACK_SECONDS
        return excerpt_window(duration, clip, self.clip_position)

    def _decode(self, track: Track, wanted: list[Backend]) -> tuple[DecodedAudio | None, str | None, float]:
        started = time.perf_counter()
        windows = [self._window(track, None, b) for b in wanted]
        start = min(w[0] for w in windows)
        ends = [w[0] + w[1] if w[1] is not None else None for w in windows]
        seconds = None if any(e is None for e in ends) else max(ends) - start
        try:
            decoded = decode_excerpt(track.path, start, seconds)
        except AudioDecodeError as exc:
            return None, str(exc), time.perf_counter() - started
        except Exception as exc:
            return None, f"decoding failed: {type(exc).__name__}: {exc}", time.perf_counter() - started
        return decoded, None, time.perf_counter() - started

    def _flush(self, backend: Backend, queue: list[_Pending], report: IndexReport) -> int:
        """Embed and store what is queued for `backend`; returns how many results were stored."""
        if not queue:
            return 0
        started = time.perf_counter()
        rows: list[EmbeddingRow] = []
        try:
            analyses = backend.analyze([p.waveform for p in queue])
            per_item = (time.perf_counter() - started) / len(queue)
            rows = [
                EmbeddingRow(
                    p.track.id,
                    backend.name,
                    backend.version,
                    a.vector.astype(np.float32),
                    extras=a.extras,
                    seconds=per_item,
                )
                for p, a in zip(queue, analyses, strict=True)
            ]
        except Exception:
            for p in queue:
                one = time.perf_counter()
                try:
                    (analysis,) = backend.analyze([p.waveform])
                    rows.append(
                        EmbeddingRow(
                            p.track.id,
                            backend.name,
                            backend.version,
                            analysis.vector.astype(np.float32),
                            extras=analysis.extras,
                            seconds=time.perf_counter() - one,
                        )
                    )
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"[:300]
                    rows.append(EmbeddingRow(p.track.id, backend.name, backend.version, None, error=reason))
                    report.backend_failures.append((p.track.path, backend.name, reason))
        self.store.put_embeddings(rows)
        report.embedded[backend.name] += sum(r.vector is not None for r in rows)
        report.embed_seconds[backend.name] += time.perf_counter() - started
        queue.clear()
        return len(rows)
