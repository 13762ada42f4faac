"""Analysing tracks: decode once and fan out, failures recorded, cancel and resume."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

import backends
import mrs_tui.indexing as indexing
from backends.base import Backend, BackendSpec
from mrs_tui.engine import Engine
from mrs_tui.indexing import Indexer
from mrs_tui.library import scan
from tests.conftest import make_library

ENERGY_SPEC = BackendSpec(
    name="energy",
    display_name="Band energies (test backend)",
    target="tests.test_indexing:BandEnergyBackend",
    sample_rate=16000,
    clip_seconds=2.0,
    dim=8,
    version="1",
    description="log energy in 8 frequency bands; a second, differently-sampled backend for fan-out tests",
)


class BandEnergyBackend(Backend):
    """A real (if simple) analysis at another sample rate, to exercise resampling and fan-out."""

    spec = ENERGY_SPEC
    calls: list[int] = []

    def load(self, weights=None):
        self.loaded = True
        return self

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        BandEnergyBackend.calls.append(len(waveforms))
        out = []
        for w in waveforms:
            spectrum = np.abs(np.fft.rfft(w)) ** 2
            bands = np.array_split(spectrum, 8)
            out.append(np.log10([b.sum() + 1e-9 for b in bands]).astype(np.float32))
        return np.stack(out)


@pytest.fixture
def energy_registered(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "energy", ENERGY_SPEC)
    BandEnergyBackend.calls = []
    return ENERGY_SPEC


def test_index_stores_vectors_and_records_undecodable_files(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=2, seconds=3.0, broken=True)
    scan(store, root)
    engine = Engine(store)
    report = engine.index(["mfcc"])
    ok = [t for t in store.tracks() if t.status == "ok"]
    assert report.embedded["mfcc"] == len(ok) == 4
    truncated = next(t for t in store.tracks() if t.path.endswith("truncated.flac"))
    assert truncated.status == "failed" and "truncated or damaged FLAC" in truncated.error
    _ids, matrix, _ = store.embedding_matrix("mfcc", engine.version("mfcc"))
    assert matrix.shape == (4, 90) and np.isfinite(matrix).all()


def test_decode_once_fan_out_to_backends_at_their_rates(store, tmp_path, energy_registered, monkeypatch):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "chiptune"), per_style=2, seconds=3.0)
    scan(store, root)
    decoded = []
    real_decode = indexing.decode_excerpt

    def counting_decode(path, start=0.0, seconds=None):
        decoded.append(path)
        return real_decode(path, start, seconds)

    monkeypatch.setattr(indexing, "decode_excerpt", counting_decode)
    mfcc = backends.load_backend("mfcc")
    energy = backends.load_backend("energy")
    seen = []
    report = Indexer(store, [mfcc, energy], batch_size=3).run(progress=seen.append)
    assert report.embedded == {"mfcc": 4, "energy": 4}
    # Progress per backend: what each has stored, and its own ETA once it has stored something.
    middle = next(p for p in seen if p.backends and 0 < p.backends[0].done < 4)
    assert middle.backends[0].eta is not None and middle.backends[0].eta > 0
    assert [(b.name, b.done, b.total) for b in seen[-1].backends] == [("mfcc", 4, 4), ("energy", 4, 4)]
    assert "mfcc 4/4" in seen[-1].describe_backends()
    assert len(decoded) == 4  # one decode per file, whatever the number of backends
    assert sum(BandEnergyBackend.calls) == 4 and max(BandEnergyBackend.calls) == 3  # batched
    # Different sample rates, different models: the vectors really come from each backend.
    _, m1, _ = store.embedding_matrix("mfcc", "1")
    _, m2, _ = store.embedding_matrix("energy", "1")
    assert m1.shape[1] == 90 and m2.shape[1] == 8


def test_cancel_then_resume_recomputes_nothing(store, tmp_path, energy_registered):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano", "chiptune"), per_style=2, seconds=2.0)
    scan(store, root)
    energy = backends.load_backend("energy")
    cancel = threading.Event()

    def stop_half_way(progress):
        if progress.done == 3:
            cancel.set()

    first = Indexer(store, [energy], batch_size=1).run(progress=stop_half_way, cancel=cancel)
    assert first.cancelled
    stored = store.embedded_track_ids("energy", "1")
    assert 0 < len(stored) < 6
    BandEnergyBackend.calls = []
    second = Indexer(store, [energy], batch_size=1).run()
    assert not second.cancelled
    assert second.total == 6 - len(stored)  # only what was not stored
    assert sum(BandEnergyBackend.calls) == 6 - len(stored)
    assert len(store.embedded_track_ids("energy", "1")) == 6


def test_a_backend_error_is_pinned_on_its_track_and_indexing_goes_on(store, tmp_path, energy_registered):
    root = tmp_path / "music"
    made = make_library(root, styles=("techno",), per_style=3, seconds=2.0)
    scan(store, root)
    bad_path = str(made["techno"][1].resolve())

    class Fussy(BandEnergyBackend):
        def embed(self, waveforms):
            if any(len(w) and abs(float(w[100])) == self.poison for w in waveforms):
                raise RuntimeError("model exploded")
            return super().embed(waveforms)

    fussy = Fussy().load()
    bad = store.track_by_path(bad_path)
    from mrs_tui.audio import decode_excerpt

    fussy.poison = abs(float(decode_excerpt(bad_path, 0.0, 2.0).at(16000)[100]))
    report = Indexer(store, [fussy], batch_size=3).run()
    assert report.embedded["energy"] == 2
    assert [(p, b) for p, b, _ in report.backend_failures] == [(bad_path, "energy")]
    assert "model exploded" in store.embedding(bad.id, "energy", "1").error


def test_progress_reports_rate_and_eta(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=3, seconds=1.0)
    scan(store, root)
    seen = []
    Indexer(store, [backends.load_backend("mfcc")]).run(progress=seen.append)
    assert seen[-1].done == seen[-1].total == 3
    assert seen[-1].rate > 0 and seen[-1].eta == 0


def test_decoders_fill_the_next_batch_while_the_backend_embeds(store, tmp_path, energy_registered, monkeypatch):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=4, seconds=2.0)
    scan(store, root)
    decodes = []
    all_decoded = threading.Event()
    real_decode = indexing.decode_excerpt

    def counting_decode(path, start=0.0, seconds=None):
        result = real_decode(path, start, seconds)
        decodes.append(path)
        if len(decodes) == 8:
            all_decoded.set()
        return result

    monkeypatch.setattr(indexing, "decode_excerpt", counting_decode)
    overlapped = []

    class Slow(BandEnergyBackend):
        def embed(self, waveforms):
            if not overlapped:  # the first batch: the remaining 4 tracks should decode meanwhile
                overlapped.append(all_decoded.wait(timeout=20))
            return super().embed(waveforms)

    indexer = Indexer(store, [Slow().load()], batch_size=4)
    assert indexer.prefetch_depth == 5  # a batch plus one track per decoder
    seen = []
    report = indexer.run(progress=seen.append)
    assert report.embedded == {"energy": 8}
    # With one track decoded ahead, the decoder idled during the batch: only 5 of 8 were ready.
    assert overlapped == [True]
    # Both stages are in the progress events: decoding runs ahead of what is handed over.
    assert any(p.decoded > p.done for p in seen)
    assert all(p.decoded >= p.done or p.done == p.total for p in seen)
    last = seen[-1]
    assert last.decoded == last.total == 8 and last.analysed == 8
    assert last.describe_stages() == "decoded 8/8 · analysed 8/8"


def test_progress_event_still_builds_as_before():
    # Runners and screens written before the pipeline build and read it positionally.
    p = indexing.IndexProgress(3, 10, 1, 2.0, "a.flac", (indexing.BackendProgress("mfcc", 2, 10, 1.0),))
    assert (p.done, p.total, p.failed, p.decoded, p.analysed) == (3, 10, 1, 0, 2)
    assert p.describe_stages() == "decoded 3/10 · analysed 2/10"


def test_torch_threads_are_set_for_the_run_and_restored(store, tmp_path, energy_registered):
    import torch

    root = tmp_path / "music"
    make_library(root, styles=("techno",), per_style=2, seconds=2.0)
    scan(store, root)
    before = torch.get_num_threads()
    during = []

    class Watching(BandEnergyBackend):
        def embed(self, waveforms):
            during.append(torch.get_num_threads())
            return super().embed(waveforms)

    Indexer(store, [Watching().load()], batch_size=1, torch_threads=1, decode_workers=2).run()
    assert during and set(during) == {1}
    assert torch.get_num_threads() == before
