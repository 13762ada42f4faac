"""MULE: a tiny random SF-NFNet-F0 in the hub checkpoint's layout, loaded through the user's path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backends import BackendError, WeightsMissing, backend_status, load_backend
from backends.mule import (
    MIN_SAMPLES,
    MuleArchitecture,
    MuleBackend,
    MuleFrontEnd,
    MuleModel,
    _WSConv2d,
    slice_centres,
    standardise,
)
from backends.testing import write_random_checkpoint
from backends.testing.mule import TINY_ARCHITECTURE
from tests.backend_helpers import assert_backend_contract, fake_hub_cache, make_clips, one_torch_thread  # noqa: F401

# Busy shared machines: one torch thread is several times faster in wall time (see the fixture).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mule")
    write_random_checkpoint("mule", folder, size="tiny", seed=5)
    return folder


@pytest.fixture(scope="module")
def backend(tiny_folder):
    # The contract is about CPU numerics; a GPU machine is checked separately below.
    return MuleBackend(device="cpu").load(tiny_folder)


def test_contract_with_long_and_short_clips(backend):
    # 4 s -> one slice; 2 s is shorter than a slice (looped to 3 s); 5 s -> two slices.
    clips = make_clips(RATE, lengths=[4.0, 2.0, 5.0], count=3, seed=1)
    batch = assert_backend_contract(backend, clips)
    assert backend.dim == TINY_ARCHITECTURE.dim == batch.shape[1]


@pytest.mark.slow
def test_front_end_matches_librosa():
    librosa = pytest.importorskip("librosa")
    wave = make_clips(RATE, 1.3, count=1, seed=7)[0]
    reference = librosa.feature.melspectrogram(
        y=wave,
        sr=RATE,
        n_fft=2048,
        hop_length=160,
        win_length=400,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=96,
        fmin=0.0,
        fmax=8000.0,
        norm=2.0,
        htk=True,
    )
    ours = MuleFrontEnd()(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(ours, np.log10(10000.0 * reference + 1.0), atol=2e-4)


def test_slices_follow_the_upstream_timeline(backend):
    assert slice_centres(3001) == [200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200, 2400, 2600, 2800, 2851]
    assert slice_centres(300) == [150]
    clip = make_clips(RATE, 30.0, count=1)[0]
    (analysis,) = backend.analyze_frames([clip])
    assert analysis.frames.shape == (15, backend.dim)
    np.testing.assert_allclose(analysis.vector, analysis.frames.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.embed([clip])[0], analysis.vector, rtol=1e-5, atol=1e-6)


def test_slice_standardisation_matches_numpy_and_survives_silence():
    slices = torch.randn(3, 96, 300) * 4 + 2
    slices[1] = 5.0  # a silent slice: zero std is floored, not divided by
    ours = standardise(slices).numpy()
    x = slices.numpy().astype(np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    x = x / np.maximum(np.nan_to_num(x.std(axis=(1, 2), keepdims=True), nan=1.0), 0.01)
    np.testing.assert_allclose(ours, x, atol=1e-4)
    assert np.isfinite(ours).all() and np.abs(ours[1]).max() == 0


def test_short_tracks_are_looped_to_one_slice(backend):
    short = make_clips(RATE, 1.0, count=1, seed=9)[0]
    looped = np.tile(short, 3)[:MIN_SAMPLES]
    np.testing.assert_allclose(backend.embed([short]), backend.embed([looped]), rtol=1e-5, atol=1e-6)


def test_weight_standardisation_and_same_padding():
    conv = _WSConv2d(6, 4, (3, 1), (2, 8))
    with torch.no_grad():
        conv.gain.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    w = conv.standardised_weight()
    fan_in = 6 * 3 * 1
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(w.var(dim=(1, 2, 3), unbiased=False) * fan_in, conv.gain**2, rtol=1e-4, atol=0)
    assert conv(torch.randn(1, 6, 96, 300)).shape == (1, 4, 48, 38)  # ceil(96/2), ceil(300/8)


def test_real_size_architecture():
    arch = MuleArchitecture()
    assert arch.slow_stage_in == (256, 512, 1024, 4608) and arch.dim == 1728
    model = MuleModel(arch)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(62.35e6, rel=0.001)
    names = model.backbone.state_dict()
    assert names["slow_stages.3.blocks.0.skip_conv.weight"].shape == (1536, 4608, 1, 1)
    assert names["fast_stages.2.blocks.5.convs.1.weight"].shape == (96, 16, 1, 3)
    assert names["fusions.3.conv2.weight"].shape == (3072, 192, 1, 1)


def test_matches_mule_torch_on_the_same_weights(tiny_folder, backend):
    """The GPL port whose author checked it against the TensorFlow original (optional: skipped
    unless `mule-torch` is installed; it reads our file through its own loader)."""
    mule_torch = pytest.importorskip("mule_torch")
    theirs = mule_torch.MuleModel.from_pretrained(hf_repo=None, model_dir=tiny_folder)
    wave = make_clips(RATE, 7.0, count=1, seed=11)[0]
    ours = backend.analyze_frames([wave])[0].frames
    with torch.inference_mode():
        reference = theirs.embed_timeline(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_fetch_from_folder_then_load_from_cache(tiny_folder, backend):
    MuleBackend.fetch(source=tiny_folder)
    assert backend_status("mule").ready
    clips = make_clips(RATE, 3.5, seed=3)
    np.testing.assert_array_equal(load_backend("mule", device="cpu").embed(clips), backend.embed(clips))


def test_fetch_from_the_hub_cache_when_offline(tiny_folder, backend, tmp_path, monkeypatch):
    import huggingface_hub.constants

    files = {name: tiny_folder / name for name in ("config.json", "model.safetensors")}
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(fake_hub_cache(tmp_path, "matteospanio/mule", files))
    )
    MuleBackend.fetch()
    clips = make_clips(RATE, 3.5, seed=8)
    np.testing.assert_array_equal(MuleBackend(device="cpu").load().embed(clips), backend.embed(clips))


def test_cli_embed_prints_the_vector(tiny_folder, tmp_path, capsys):
    import soundfile as sf

    from mrs_tui.cli import main

    audio = tmp_path / "song.wav"
    sf.write(audio, make_clips(44100, 4.0, count=1)[0], 44100)
    assert main(["embed", str(audio), "--backend", "mule", "--weights", str(tiny_folder), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["dim"] == TINY_ARCHITECTURE.dim and len(result["embedding"]) == result["dim"]


# -- error paths ---------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_weights_say_how_to_get_them():
    with pytest.raises(WeightsMissing) as exc:
        load_backend("mule")
    assert "mrs-tui backends fetch mule" in _one_line(exc)


def test_wrong_folder(tmp_path):
    with pytest.raises(WeightsMissing) as exc:
        MuleBackend().load(tmp_path / "nowhere")
    assert "does not exist" in _one_line(exc)


def test_corrupt_weights(tmp_path, tiny_folder):
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    data = (tiny_folder / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "model.safetensors" in _one_line(exc)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "config.json" in _one_line(exc)


def test_config_of_another_backend_is_refused(tmp_path, tiny_folder):
    (tmp_path / "model.safetensors").write_bytes((tiny_folder / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"label_rate": 25, "w2v2_config": {}, "stat": {}}))
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "not a MULE config" in _one_line(exc)
    other_rate = json.loads((tiny_folder / "config.json").read_text()) | {"sample_rate": 24000}
    (tmp_path / "config.json").write_text(json.dumps(other_rate))
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "sample_rate" in _one_line(exc)


def test_weights_of_another_backend_are_refused(tmp_path, tiny_folder):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    save_file({"model.encoder.layers.0.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "not a MULE checkpoint" in _one_line(exc)


def test_real_checkpoint_with_tiny_config_is_refused(tmp_path, tiny_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_folder / "model.safetensors"))
    state["backbone.slow_stem.convs.0.weight"] = torch.zeros(16, 1, 3, 1)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "shapes" in _one_line(exc)


def test_other_front_end_is_refused(tmp_path, tiny_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_folder / "model.safetensors"))
    state["frontend.mel_fb"] = state["frontend.mel_fb"].flip(0).contiguous()
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    with pytest.raises(BackendError) as exc:
        MuleBackend().load(tmp_path)
    assert "filterbank" in _one_line(exc)


def test_fetch_offline_gives_a_clear_error():
    with pytest.raises(WeightsMissing) as exc:
        MuleBackend.fetch()
    assert "offline" in _one_line(exc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tiny_folder, backend):
    gpu = MuleBackend(device="cuda").load(tiny_folder)
    clips = make_clips(RATE, lengths=[4.0, 2.0], count=2, seed=6)
    on_gpu, on_cpu = gpu.embed(clips), backend.embed(clips)
    # cuDNN may use TF32 convolutions: close, not identical.
    assert np.linalg.norm(on_gpu - on_cpu) / np.linalg.norm(on_cpu) < 1e-2
