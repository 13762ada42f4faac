"""Reduced precision (precision=int8 / bf16) of the heavy backends, and the fidelity check against fp32.

Tiny random models of the real architectures cannot show the fidelity thresholds are met
(their vectors of different clips are nearly parallel, so neighbour ranks hang on float
noise); the real figures are in bench/bench_backends.py --precisions. These tests check that
the option really changes the computation, that its vectors live under their own version,
that the rewrites are exact where they claim to be, and that the measurement is right.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from backends import _precision, embedding_version, load_backend, weights_dir
from backends.base import BackendError
from backends.testing import write_random_checkpoint
from mrs_tui import precision_check
from mrs_tui.cli import main
from mrs_tui.engine import Engine
from mrs_tui.library import scan
from tests.backend_helpers import make_clips
from tests.conftest import make_library

HEAVY = {"mert": 24000, "music2vec": 16000, "musicfm": 24000, "muq": 24000}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return {name: write_random_checkpoint(name, root / name, size="tiny", seed=3) for name in HEAVY}


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_int8_quantises_the_linear_layers_and_stays_close_to_fp32(name, tiny_checkpoints):
    clips = make_clips(HEAVY[name], 2.0, count=3)
    fp32 = load_backend(name, tiny_checkpoints[name])
    int8 = load_backend(name, tiny_checkpoints[name], precision="int8")
    quantised = [m for m in int8.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantised, "no linear layer was quantised"
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    a, b = fp32.embed(clips), int8.embed(clips)
    assert a.shape == b.shape and b.dtype == np.float32
    assert not np.array_equal(a, b)  # the option changes the computation...
    assert _cosine(a, b).min() > 0.995  # ...and only by quantisation noise
    assert fp32.version == embedding_version(name)
    assert int8.version == embedding_version(name) + "+precision=int8"
    # A clip's int8 vector does not depend on the clips batched with it (activation scales are
    # per tensor, so int8 runs one clip per forward): `embed` of one file equals the indexer's.
    np.testing.assert_array_equal(int8.embed(clips[1:2])[0], b[1])


def test_explicit_fp32_is_the_default_version_and_the_default_computation(tiny_checkpoints):
    clips = make_clips(24000, 2.0, count=2)
    default = load_backend("musicfm", tiny_checkpoints["musicfm"])
    explicit = load_backend("musicfm", tiny_checkpoints["musicfm"], precision="fp32")
    assert explicit.version == default.version == "msd-1"
    np.testing.assert_array_equal(default.embed(clips), explicit.embed(clips))


@pytest.mark.parametrize("kernel,stride,channels", [(3, 2, 24), (2, 2, 40), (1, 1, 70)])
def test_windowed_convolution_equals_the_convolution(kernel, stride, channels, monkeypatch):
    monkeypatch.setattr(_precision, "WINDOW_CHUNK_FRAMES", 7)  # several chunks, one of them short
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(channels, 16, kernel, stride=stride, bias=True).eval()
    windowed = _precision.WindowedConv1d.from_conv(conv)
    x = torch.randn(2, channels, 61)
    with torch.inference_mode():
        torch.testing.assert_close(windowed(x), conv(x), rtol=1e-5, atol=1e-5)
        # A transposed (time-major) input, as the previous windowed layer hands over.
        torch.testing.assert_close(windowed(x.transpose(1, 2).contiguous().transpose(1, 2)), conv(x))


def test_only_plain_convolutions_with_enough_taps_are_rewritten():
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 64, 10, stride=5),  # the waveform layer: 10 taps
        torch.nn.Conv1d(64, 64, 3, stride=2),
        torch.nn.Conv1d(64, 64, 31, padding=15, groups=64),  # depthwise
        torch.nn.Conv1d(64, 64, 1),
        torch.nn.Conv1d(64, 64, 3, padding=1),  # padded
    )
    assert _precision.linearise_convolutions(model) == 2
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv1d", "WindowedConv1d", "Conv1d", "WindowedConv1d", "Conv1d"]
    # Only the pointwise one is left for int8 quantisation; the strided one computes in float.
    assert type(model[1].linear) is _precision.FloatLinear and type(model[3].linear) is torch.nn.Linear


def test_bf16_is_refused_where_the_cpu_only_emulates_it(tiny_checkpoints, monkeypatch):
    monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BackendError) as info:
        load_backend("muq", tiny_checkpoints["muq"], precision="bf16")
    assert "bfloat16 instructions" in info.value.problem and "precision=int8" in info.value.fix


def test_bf16_runs_under_bfloat16_autocast_where_supported(tiny_checkpoints, monkeypatch):
    monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: True)
    clips = make_clips(24000, 2.0, count=2)
    fp32 = load_backend("musicfm", tiny_checkpoints["musicfm"]).embed(clips)
    bf16 = load_backend("musicfm", tiny_checkpoints["musicfm"], precision="bf16")
    assert bf16.version == "msd-1+precision=bf16"
    # The mel front end's maps are computed channels-last: oneDNN's bf16 reorders cost more than its convolutions.
    convolutions = [m for m in bf16.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convolutions)
    vectors = bf16.embed(clips)
    assert vectors.dtype == np.float32 and not np.array_equal(vectors, fp32)
    assert _cosine(vectors, fp32).min() > 0.99


def test_int8_on_a_gpu_and_unknown_precisions_are_one_line_errors(tiny_checkpoints):
    with pytest.raises(BackendError, match="CPU only"):
        _precision.check_supported("int8", "cuda")
    with pytest.raises(BackendError, match="precision 'fp8'") as info:
        load_backend("mert", tiny_checkpoints["mert"], precision="fp8")
    assert "fp32, int8, bf16" in info.value.fix
    with pytest.raises(BackendError, match="no option precision"):
        load_backend("mfcc", precision="int8")


def test_int8_vectors_are_stored_under_their_own_version_beside_fp32(store, tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=2, seconds=3.0)
    scan(store, root)
    write_random_checkpoint("musicfm", weights_dir("musicfm"), size="tiny", seed=1)
    fp32_engine = Engine(store)
    int8_engine = Engine(store, backend_options={"musicfm": {"precision": "int8"}})
    assert fp32_engine.index(["musicfm"]).embedded["musicfm"] == 4
    # The int8 run does not count the fp32 vectors as done: it analyses every track again.
    assert int8_engine.index(["musicfm"]).embedded["musicfm"] == 4
    ids_a, fp32_vectors, _ = store.embedding_matrix("musicfm", "msd-1")
    ids_b, int8_vectors, _ = store.embedding_matrix("musicfm", "msd-1+precision=int8")
    assert sorted(ids_a) == sorted(ids_b) and len(ids_a) == 4
    order = np.argsort(ids_b)[np.argsort(np.argsort(ids_a))]
    assert not np.array_equal(fp32_vectors, int8_vectors[order])
    assert _cosine(fp32_vectors, int8_vectors[order]).min() > 0.99
    # Each engine's catalogue holds its own version only.
    assert fp32_engine.catalogue("musicfm").version == "msd-1"
    assert int8_engine.catalogue("musicfm").version == "msd-1+precision=int8"
    assert len(fp32_engine.catalogue("musicfm")) == len(int8_engine.catalogue("musicfm")) == 4


def test_compare_counts_cosines_and_changed_neighbourhoods():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((12, 6))
    cosines, same, k = precision_check.compare(reference, reference.copy(), k=3)
    assert k == 3 and same.all() and np.allclose(cosines, 1.0)
    # Move item 0 onto item 5: 0's neighbours change, and so do those of whoever gains or loses 0.
    moved = reference.copy()
    moved[0] = reference[5] + 1e-3
    cosines, same, _ = precision_check.compare(reference, moved, k=3)
    expected_cosine = reference[0] @ moved[0] / np.linalg.norm(reference[0]) / np.linalg.norm(moved[0])
    assert cosines[0] == pytest.approx(expected_cosine, abs=1e-6) and np.allclose(cosines[1:], 1.0)
    before = precision_check.top_neighbours(reference, 3)
    after = precision_check.top_neighbours(moved, 3)
    assert not same[0] and 5 in after[0]
    assert list(same) == [a == b for a, b in zip(before, after, strict=True)]
    # k is capped at n - 1, and the report says when the neighbour test is vacuous.
    _, _, k = precision_check.compare(reference[:4], reference[:4], k=10)
    assert k == 3


def test_excerpts_cut_files_into_consecutive_pieces(tmp_path):
    rate = 16000
    sf.write(tmp_path / "long.wav", make_clips(rate, 12.0, count=1)[0], rate)
    sf.write(tmp_path / "short.wav", make_clips(rate, 3.0, count=1)[0], rate)
    names, waves = precision_check.excerpts(
        [tmp_path / "long.wav", tmp_path / "short.wav"], sample_rate=24000, seconds=4.0
    )
    assert names == ["long.wav@0s", "long.wav@4s", "long.wav@8s", "short.wav"]
    assert [len(w) for w in waves[:3]] == [96000] * 3 and abs(len(waves[3]) - 72000) <= 1


def test_check_precision_command_reports_the_measurement(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for index, clip in enumerate(make_clips(24000, 4.0, count=6, seed=2)):
        sf.write(clips / f"clip{index}.flac", clip, 24000)
    folder = write_random_checkpoint("musicfm", tmp_path / "weights", size="tiny", seed=0)
    argv = ["backends", "check-precision", "musicfm", "--precision", "int8", "--clips", str(clips)]
    code = main([*argv, "--weights", str(folder), "--excerpt-seconds", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["excerpts"] == 24 and report["k"] == 10 and report["neighbours_meaningful"]
    assert report["version"] == "msd-1+precision=int8" and report["reference_version"] == "msd-1"
    cosines = [row["cosine"] for row in report["per_excerpt"]]
    assert report["min_cosine"] == pytest.approx(min(cosines)) and 0.99 < min(cosines) < 1.0
    share = np.mean([row["same_neighbours"] for row in report["per_excerpt"]])
    assert report["same_neighbours_share"] == pytest.approx(share)
    assert report["passed"] == (min(cosines) >= 0.999 and share >= 0.9)
    assert code == (0 if report["passed"] else 1)


def test_check_precision_refuses_a_backend_without_the_option(capsys, tmp_path):
    assert main(["backends", "check-precision", "musicnn", "--precision", "int8", "--clips", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no precision option" in err and "mert" in err and "Traceback" not in err
