"""Jukebox: a tiny random model in OpenAI's checkpoint layout, loaded through the user's path.

The tiny model keeps the real token rate (128 samples per token), context (8192 tokens),
attention block size (64) and label tables, and has 37 blocks so the read-out after block 36
is the real one. It runs on the CPU only because the tests pass ``allow_cpu=True``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backends import BackendError, WeightsMissing, load_backend, weights_dir
from backends.jukebox import (
    CONVERTED_FILES,
    LAYER,
    UPSTREAM_FILES,
    JukeboxBackend,
    JukeboxConfig,
    JukeboxLayer36,
    _FactoredAttention,
    _range_bins,
)
from backends.testing import write_random_checkpoint
from tests.backend_helpers import assert_backend_contract, make_clips, one_torch_thread  # noqa: F401

# Busy shared machines: one torch thread is several times faster in wall time (see the fixture).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 44100


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jukebox")
    write_random_checkpoint("jukebox", folder, size="tiny", seed=2)
    return folder


@pytest.fixture(scope="module")
def backend(tiny_folder):
    # The contract is about CPU numerics; a GPU machine is checked separately below.
    return JukeboxBackend(allow_cpu=True, device="cpu").load(tiny_folder)


def test_contract_on_clips_of_different_lengths(backend):
    clips = make_clips(RATE, lengths=[1.0, 0.6, 1.0], count=3, seed=1)
    batch = assert_backend_contract(backend, clips)
    assert backend.dim == 32 and batch.shape == (3, 32)


def test_loudness_does_not_matter_after_peak_normalisation(backend):
    clip = make_clips(RATE, 1.0, count=1, seed=3)[0]
    np.testing.assert_allclose(backend.embed([clip]), backend.embed([0.25 * clip]), rtol=1e-5, atol=1e-6)


def test_token_rate_and_context_cap(backend):
    with torch.inference_mode():
        assert backend._tokens(np.ones(2 * RATE, np.float32)).shape == (2 * RATE // 128,)
        clip = make_clips(RATE, 24.0, count=1)[0]
        assert backend._tokens(clip).shape == (8192,)  # 8268 tokens in 24 s, the prior sees 8192


def test_read_out_is_causal_so_padding_never_leaks(backend):
    tokens = torch.randint(0, 32, (1, 200), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        short = backend.model(tokens[:, :100], torch.float32)
        long = backend.model(tokens, torch.float32)
    torch.testing.assert_close(short, long[:, :100], rtol=1e-4, atol=1e-5)


def _explicit_attention(attn: _FactoredAttention, x: torch.Tensor) -> torch.Tensor:
    """jukebox's factored attention written over the whole sequence with an explicit mask."""
    n, length, _ = x.shape
    q, k, v = attn.c_attn(x).chunk(3, dim=2)
    d, heads, bc = q.shape[-1], attn.heads, attn.block_ctx
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    if attn.attn_func == 1:
        allowed = (i // bc == j // bc) & (j <= i)
    elif attn.attn_func == 2:
        allowed = (i % bc == j % bc) & (j <= i)
    else:
        allowed = j // bc == i // bc - 1
    split = lambda t: t.view(n, length, heads, d // heads).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    scores = scores * allowed + -1e9 * (~allowed)
    out = scores.softmax(-1) @ split(v)
    if attn.attn_func == 3:  # the first block attends to a zero block upstream: zero output
        out[:, :, :bc] = 0
    return attn.c_proj(out.transpose(1, 2).reshape(n, length, d))


@pytest.mark.parametrize("block", [0, 1, 2])  # block, transpose-block and previous-block attention
def test_attention_patterns_match_the_explicit_masks(backend, block):
    attn = backend.model.prior.transformer._attn_mods[block].attn
    assert attn.attn_func == block + 1
    x = torch.randn(2, 256, 32, generator=torch.Generator().manual_seed(block))
    with torch.inference_mode():
        torch.testing.assert_close(attn(x), _explicit_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_unknown_song_conditioning_bins():
    cfg = JukeboxConfig()
    total = torch.tensor([[float(62 * RATE // 128 * 128)]])
    assert _range_bins(total, None, 1, 128, cfg.t_ranges[0]).item() == 0
    start, end = torch.tensor([[0.0]]), torch.tensor([[8192.0 * 128]])
    absolute = _range_bins(start, end, 8192, 128, cfg.t_ranges[1])[0].numpy()
    np.testing.assert_array_equal(absolute, np.floor(128 * (128.0 * np.arange(8192)) / 26460000.0))
    relative = _range_bins(start / total, end / total, 8192, 128, cfg.t_ranges[2], clamp=True)[0].numpy()
    assert relative[0] == 0 and relative[-1] == math.floor(128 * 1048576 / 2734080 * 8191 / 8192)
    assert np.all(np.diff(relative) >= 0)


def test_start_position_carries_the_label_embedding(backend):
    model = backend.model
    y = model.y_emb
    expected = y.artist_emb.emb.weight[0] + y.bow_genre_emb.emb.weight[0]
    torch.testing.assert_close(model.start_cond, expected.float())


def test_real_size_architecture_on_the_meta_device():
    with torch.device("meta"):
        model = JukeboxLayer36(JukeboxConfig(), layer=72)
    block = model.prior.transformer._attn_mods[0]
    assert sum(p.numel() for p in block.parameters()) == pytest.approx(69.1e6, rel=0.001)
    prior_params = sum(p.numel() for p in model.prior.parameters())
    assert prior_params == pytest.approx(5.0e9, rel=0.01)  # "5B"
    assert block.attn.c_attn.w.shape == (4800, 3600) and block.mlp.c_fc.w.shape == (4800, 4800)
    assert model.vqvae.state_dict()["encoders.2.level_blocks.0.model.0.0.weight"].shape == (32, 1, 4)


def test_fetch_from_folder_converts_and_keeps_only_layer_36(tiny_folder, backend):
    from safetensors import safe_open

    folder = JukeboxBackend.fetch(source=tiny_folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(CONVERTED_FILES)
    assert all((tiny_folder / name).is_file() for name in UPSTREAM_FILES)  # the user's files stay
    with safe_open(str(folder / CONVERTED_FILES[1]), framework="pt") as handle:
        keys = set(handle.keys())
    assert f"prior.transformer._attn_mods.{LAYER - 1}.ln_0.weight" in keys
    assert f"prior.transformer._attn_mods.{LAYER}.ln_0.weight" not in keys and "prior.x_out.weight" not in keys
    converted = load_backend("jukebox", allow_cpu=True, device="cpu")
    clips = make_clips(RATE, 1.0, seed=4)
    np.testing.assert_allclose(converted.embed(clips), backend.embed(clips), rtol=1e-6, atol=1e-6)


def test_download_falls_back_to_the_second_address(tiny_folder, backend, tmp_path, monkeypatch):
    # No network here: the "server" is a file:// URL, which urllib serves through the same code.
    import backends.jukebox as jukebox

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(jukebox, "DOWNLOAD_URLS", ((tmp_path / "gone").as_uri() + "/", tiny_folder.as_uri() + "/"))
    folder = JukeboxBackend.fetch()
    assert sorted(p.name for p in folder.iterdir()) == sorted(CONVERTED_FILES)  # pickles removed after converting
    clips = make_clips(RATE, 1.0, seed=9)
    fetched = JukeboxBackend(allow_cpu=True, device="cpu").load()
    np.testing.assert_allclose(fetched.embed(clips), backend.embed(clips), rtol=1e-6, atol=1e-6)


# -- refusals and error paths ----------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cpu_only_machine_is_refused_before_reading_weights(tiny_folder):
    with pytest.raises(BackendError) as exc:
        JukeboxBackend().load(tiny_folder)
    assert "GPU" in _one_line(exc)


def test_missing_weights_say_how_to_get_them():
    with pytest.raises(WeightsMissing) as exc:
        JukeboxBackend(allow_cpu=True).load()
    assert "mrs-tui backends fetch jukebox" in _one_line(exc)


def test_wrong_folder(tmp_path):
    with pytest.raises(WeightsMissing) as exc:
        JukeboxBackend(allow_cpu=True).load(tmp_path / "nowhere")
    assert "does not exist" in _one_line(exc)


def test_corrupt_file(tmp_path, tiny_folder):
    (tmp_path / UPSTREAM_FILES[0]).write_bytes((tiny_folder / UPSTREAM_FILES[0]).read_bytes())
    data = (tiny_folder / UPSTREAM_FILES[1]).read_bytes()
    (tmp_path / UPSTREAM_FILES[1]).write_bytes(data[: len(data) // 2])
    with pytest.raises(BackendError) as exc:
        JukeboxBackend(allow_cpu=True).load(tmp_path)
    assert "prior_level_2.pth.tar" in _one_line(exc)


def test_checkpoint_of_another_backend_is_refused(tmp_path, tiny_folder):
    (tmp_path / UPSTREAM_FILES[0]).write_bytes((tiny_folder / UPSTREAM_FILES[0]).read_bytes())
    torch.save({"state_dict": {"model.conv.weight": torch.zeros(2)}}, tmp_path / UPSTREAM_FILES[1])
    with pytest.raises(BackendError) as exc:
        JukeboxBackend(allow_cpu=True).load(tmp_path)
    assert "not a Jukebox checkpoint" in _one_line(exc)


def test_a_shallow_prior_is_refused(tmp_path, tiny_folder):
    raw = torch.load(tiny_folder / UPSTREAM_FILES[1], weights_only=True)
    raw["model"] = {
        k: v
        for k, v in raw["model"].items()
        if not (k.startswith("prior.transformer._attn_mods.") and int(k.split(".")[3]) >= 20)
    }
    torch.save(raw, tmp_path / UPSTREAM_FILES[1])
    (tmp_path / UPSTREAM_FILES[0]).write_bytes((tiny_folder / UPSTREAM_FILES[0]).read_bytes())
    with pytest.raises(BackendError) as exc:
        JukeboxBackend(allow_cpu=True).load(tmp_path)
    assert "blocks" in _one_line(exc)


class _Hyperparams(dict):  # like jukebox.hparams.Hyperparams: not loadable with weights_only
    pass


def test_pickled_hyperparameters_need_allow_pickle(tmp_path, tiny_folder):
    for name in UPSTREAM_FILES:
        raw = torch.load(tiny_folder / name, weights_only=True)
        raw["hps"] = _Hyperparams(raw["hps"])
        torch.save(raw, tmp_path / name)
    with pytest.raises(BackendError) as exc:
        JukeboxBackend(allow_cpu=True).load(tmp_path)
    assert "--allow-pickle" in _one_line(exc)
    with pytest.raises(BackendError):
        JukeboxBackend.fetch(source=tmp_path)
    assert not (weights_dir("jukebox") / CONVERTED_FILES[1]).exists()  # nothing half-installed
    JukeboxBackend.fetch(source=tmp_path, allow_pickle=True)
    assert load_backend("jukebox", allow_cpu=True).loaded


def test_fetch_offline_gives_a_clear_error():
    with pytest.raises(WeightsMissing) as exc:
        JukeboxBackend.fetch()
    assert "offline" in _one_line(exc) and "--from FOLDER" in _one_line(exc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_half_precision_matches_cpu(tiny_folder, backend):
    gpu = JukeboxBackend(device="cuda").load(tiny_folder)
    assert gpu.model.prior.transformer._attn_mods[0].attn.c_attn.w.dtype == torch.float16
    clips = make_clips(RATE, lengths=[2.0, 1.5], count=2, seed=6)
    with torch.inference_mode():
        same_tokens = [(gpu._tokens(c).cpu() == backend._tokens(c)).float().mean().item() for c in clips]
    assert min(same_tokens) > 0.98
    on_gpu, on_cpu = gpu.embed(clips), backend.embed(clips)
    cosine = (on_gpu * on_cpu).sum(1) / np.linalg.norm(on_gpu, axis=1) / np.linalg.norm(on_cpu, axis=1)
    assert cosine.min() > 0.99


def test_allow_cpu_does_not_change_the_embedding_version():
    assert JukeboxBackend(allow_cpu=True).version == JukeboxBackend().version == "5b-l36-1"
