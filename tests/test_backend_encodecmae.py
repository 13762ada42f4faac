"""EncodecMAE: a tiny random model written in the upstream layout, loaded through the user's path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backends import BackendError, WeightsMissing, backend_status, load_backend
from backends.encodecmae import (
    CHUNK_SAMPLES,
    EncodecMAEBackend,
    EncodecMAEConfig,
    EncodecMAEModel,
    upstream_state_dict,
)
from backends.testing import write_random_checkpoint
from tests.backend_helpers import assert_backend_contract, fake_hub_cache, make_clips, one_torch_thread  # noqa: F401

# Busy shared machines: one torch thread is several times faster in wall time (see the fixture).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 24000


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encodecmae")
    write_random_checkpoint("encodecmae", folder, size="tiny", seed=3)
    return folder


@pytest.fixture(scope="module")
def backend(tiny_folder):
    # The contract is about CPU numerics; a GPU machine is checked separately below.
    return EncodecMAEBackend(device="cpu").load(tiny_folder)


def test_contract_on_clips_with_full_and_partial_chunks(backend):
    # 4.5 s = one full 4-s chunk + a 0.5-s chunk; 1 s and 2 s = a single partial chunk each.
    clips = make_clips(RATE, lengths=[4.5, 1.0, 2.0], count=3, seed=1)
    batch = assert_backend_contract(backend, clips)
    assert backend.dim == 32 and batch.shape == (3, 32)


def test_frames_follow_the_upstream_chunking(backend):
    clip = make_clips(RATE, 30.0, count=1)[0]
    (analysis,) = backend.analyze_frames([clip])
    assert analysis.frames.shape == (2250, 32)  # 75 frames/s, 4-s chunks concatenated
    np.testing.assert_allclose(analysis.vector, analysis.frames.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.embed([clip])[0], analysis.vector, rtol=1e-6)
    odd = clip[: CHUNK_SAMPLES + 1000]  # a trailing chunk whose last frame is partly padding
    (short,) = backend.analyze_frames([odd])
    assert short.frames.shape[0] == 300 + math.ceil(1000 / 320)


def _upstream_forward(model: EncodecMAEModel, chunk: torch.Tensor) -> torch.Tensor:
    """The v1 upstream maths written out plainly (attention as explicit masked softmax)."""
    cfg = model.cfg
    feats = model.wav_encoder(chunk) @ model.feat_projector.weight.T + model.feat_projector.bias
    n, t, d = feats.shape
    pe = torch.zeros(t, d)
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    x = feats + model.positional_encoder.scale * pe
    key_mask = torch.zeros(n, t, dtype=torch.bool)
    key_mask[:, chunk.shape[1] // 320 :] = True
    h, dq = cfg.num_heads, d // cfg.num_heads
    normed, raw = x, x
    for layer in model.visible_encoder.encoder_layers:
        att = layer.att_layer
        q = (normed @ att.wq.weight.T).view(n, t, dq, h).permute(0, 3, 1, 2).reshape(n * h, t, dq)
        k = (normed @ att.wk.weight.T).view(n, t, dq, h).permute(0, 3, 1, 2).reshape(n * h, t, dq)
        v = (normed @ att.wv.weight.T).view(n, t, dq, h).permute(0, 3, 1, 2).reshape(n * h, t, dq)
        scores = q @ k.transpose(-2, -1) * dq**-0.5
        mask = key_mask[:, None, None, :].expand(n, h, t, t).reshape(n * h, t, t)
        weights = (scores + mask * -1e9).softmax(-1)
        out = (weights @ v).view(n, h, t, dq).permute(0, 2, 3, 1).reshape(n, t, dq * h) @ att.wo.weight.T
        normed = layer.norm1(normed + out)
        raw = raw + out
        ff = layer.ff_layer(normed)
        normed, raw = layer.norm2(normed + ff), raw + ff
    return normed + model.visible_encoder.final_norm(raw)


def test_model_matches_the_upstream_formulas(backend):
    chunk = torch.from_numpy(make_clips(RATE, 1.5, count=1, seed=4)[0][: int(1.5 * RATE) - 100][None])
    with torch.inference_mode():
        ours = backend.model(chunk)
        reference = _upstream_forward(backend.model, chunk)
    assert ours.shape == (1, math.ceil(chunk.shape[1] / 320), 32)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_upstream_weight_norm_tensors_become_the_seanet_convolution(backend, tiny_folder):
    # model.pt names a conv's weight-norm parts the encodec way; the loaded transformers conv
    # must compute g * v / ||v|| from exactly those tensors.
    stored = torch.load(tiny_folder / "model.pt", weights_only=True)["state_dict"]
    g = stored["wav_encoder.model.model.0.conv.conv.weight_g"]
    v = stored["wav_encoder.model.model.0.conv.conv.weight_v"]
    conv = backend.model.wav_encoder.model.layers[0].conv
    reference = torch.nn.Conv1d(1, v.shape[0], 7)
    with torch.no_grad():
        reference.weight.copy_(g * v / v.norm(dim=(1, 2), keepdim=True))
        reference.bias.copy_(stored["wav_encoder.model.model.0.conv.conv.bias"])
        x = torch.randn(2, 1, 500)
        torch.testing.assert_close(conv(x), reference(x))


def test_the_shared_feed_forward_block_is_one_module(backend):
    layers = backend.model.visible_encoder.encoder_layers
    assert all(layer.ff_layer is layers[0].ff_layer for layer in layers)


def test_fetch_from_folder_converts_to_safetensors_with_same_vectors(tiny_folder, backend):
    path = EncodecMAEBackend.fetch(source=tiny_folder)
    assert (path / "model.safetensors").is_file() and not (path / "model.pt").exists()
    assert (tiny_folder / "model.pt").is_file()  # the user's folder is left alone
    assert backend_status("encodecmae").ready
    cached = load_backend("encodecmae", device="cpu")  # from the user cache
    clips = make_clips(RATE, 4.5, seed=2)
    np.testing.assert_array_equal(cached.embed(clips), backend.embed(clips))


def test_fetch_from_the_hub_cache_when_offline(tiny_folder, backend, tmp_path, monkeypatch):
    import huggingface_hub.constants

    files = {name: tiny_folder / name for name in ("model.pt", "config.gin", "imports")}
    cache = fake_hub_cache(tmp_path, "lpepino/encodecmae-base", files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    folder = EncodecMAEBackend.fetch()
    assert (folder / "model.safetensors").is_file() and (folder / "config.gin").is_file()
    clips = make_clips(RATE, 4.5, seed=8)
    np.testing.assert_array_equal(EncodecMAEBackend(device="cpu").load().embed(clips), backend.embed(clips))


def test_real_size_architecture_has_the_base_shapes():
    model = EncodecMAEModel(EncodecMAEConfig())
    names = upstream_state_dict(model)
    assert names["wav_encoder.model.model.13.lstm.weight_ih_l0"].shape == (2048, 512)
    assert names["wav_encoder.model.model.15.conv.conv.weight_v"].shape == (128, 512, 7)
    assert names["visible_encoder.encoder_layers.9.ff_layer.0.weight"].shape == (4096, 768)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(37.4e6, rel=0.01)


# -- error paths ---------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_weights_say_how_to_get_them():
    with pytest.raises(WeightsMissing) as exc:
        load_backend("encodecmae")
    assert "mrs-tui backends fetch encodecmae" in _one_line(exc)


def test_wrong_folder(tmp_path):
    with pytest.raises(WeightsMissing) as exc:
        EncodecMAEBackend().load(tmp_path / "nowhere")
    assert "does not exist" in _one_line(exc)
    with pytest.raises(WeightsMissing) as exc:
        EncodecMAEBackend().load(tmp_path)
    assert "model.pt" in _one_line(exc)


def test_corrupt_file(tmp_path, tiny_folder):
    data = (tiny_folder / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(BackendError) as exc:
        EncodecMAEBackend().load(tmp_path)
    assert "model.pt" in _one_line(exc)


def test_checkpoint_of_another_backend_is_refused(tmp_path):
    # MusicFM's layout: a pickle with 'state_dict' whose keys start with "model.".
    torch.save({"state_dict": {"model.conv.weight": torch.zeros(4, 4)}}, tmp_path / "model.pt")
    with pytest.raises(BackendError) as exc:
        EncodecMAEBackend().load(tmp_path)
    assert "not an EncodecMAE checkpoint" in _one_line(exc)


def test_extra_unknown_tensors_are_refused(tmp_path, tiny_folder):
    state = torch.load(tiny_folder / "model.pt", weights_only=True)
    state["state_dict"]["visible_encoder.encoder_layers.0.att_layer.rel_bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(BackendError) as exc:
        EncodecMAEBackend().load(tmp_path)
    assert "unexpected" in _one_line(exc)


def test_unshared_feed_forward_is_refused(tmp_path, tiny_folder):
    state = torch.load(tiny_folder / "model.pt", weights_only=True)["state_dict"]
    state = {k: v.clone() for k, v in state.items()}
    state["visible_encoder.encoder_layers.1.ff_layer.0.bias"] += 1.0
    torch.save({"state_dict": state}, tmp_path / "model.pt")
    with pytest.raises(BackendError) as exc:
        EncodecMAEBackend().load(tmp_path)
    assert "feed-forward" in _one_line(exc)


class _Opaque:  # a class weights_only unpickling does not allow
    pass


def test_pickle_with_objects_needs_allow_pickle(tmp_path, tiny_folder):
    state = torch.load(tiny_folder / "model.pt", weights_only=True)
    state["hyper_parameters"] = _Opaque()
    source = tmp_path / "src"
    source.mkdir()
    torch.save(state, source / "model.pt")
    with pytest.raises(BackendError) as exc:
        EncodecMAEBackend().load(source)
    assert "--allow-pickle" in _one_line(exc)
    with pytest.raises(BackendError):
        EncodecMAEBackend.fetch(source=source)
    folder = EncodecMAEBackend.fetch(source=source, allow_pickle=True)
    assert (folder / "model.safetensors").is_file()
    assert EncodecMAEBackend().load().loaded


def test_fetch_offline_gives_a_clear_error():
    with pytest.raises(WeightsMissing) as exc:
        EncodecMAEBackend.fetch()
    assert "--from FOLDER" in _one_line(exc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tiny_folder, backend):
    gpu = EncodecMAEBackend(device="cuda").load(tiny_folder)
    clips = make_clips(RATE, lengths=[5.0, 2.5], count=2, seed=6)
    on_gpu, on_cpu = gpu.embed(clips), backend.embed(clips)
    # cuDNN may use TF32 convolutions: close, not identical.
    assert np.linalg.norm(on_gpu - on_cpu) / np.linalg.norm(on_cpu) < 1e-2
