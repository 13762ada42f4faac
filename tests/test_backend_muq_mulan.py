"""MuQ-MuLan audio tower: a tiny random model in the hub layout, loaded like real weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from backends import backend_status, load_backend
from backends.base import BackendError, WeightsMissing
from backends.muq import MuQBackend
from backends.muq_mulan import MUQ_CONFIG, MuQMuLanBackend, split_clips
from backends.testing import write_random_checkpoint
from tests.backend_helpers import assert_backend_contract, conformer_reference_frames, fake_hub_cache, make_clips

RATE = 24000
CLIP = 2 * RATE  # the tiny config's clip_secs


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return write_random_checkpoint("muq_mulan", tmp_path_factory.mktemp("mulan"), size="tiny", seed=2)


@pytest.fixture(scope="module")
def backend(tiny_folder) -> MuQMuLanBackend:
    return MuQMuLanBackend(device="cpu").load(tiny_folder)


def _copy(folder: Path, target: Path) -> Path:
    target.mkdir()
    for item in folder.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def _reference_clip_latent(clip: np.ndarray, folder: Path) -> np.ndarray:
    """Upstream's audio path written out with plain tensor ops (einsum attention, as in muq_mulan)."""
    config = json.loads((folder / "config.json").read_text())
    muq = json.loads((folder / MUQ_CONFIG).read_text())
    t = {k[len("mulan.") :]: v for k, v in load_file(folder / "model.safetensors").items()}
    encoder = {k[len("audio.model.model.") :]: v for k, v in t.items() if k.startswith("audio.model.model.")}
    x = torch.from_numpy(
        conformer_reference_frames(
            clip,
            encoder,
            mel_mean=muq["stat"]["melspec_2048_mean"],
            mel_std=muq["stat"]["melspec_2048_std"],
            num_heads=muq["w2v2_config"]["num_attention_heads"],
        )
    )
    x = F.linear(x, t["audio.proj.weight"], t["audio.proj.bias"])
    heads = config["audio_transformer"]["heads"]

    def norm(y, gamma):
        return F.layer_norm(y, y.shape[-1:], gamma, torch.zeros_like(gamma))

    for i in range(config["audio_transformer"]["tf_depth"]):
        p = f"audio.transformer.layers.{i}."
        h = norm(x, t[p + "0.norm.learned_gamma"])
        q = h @ t[p + "0.to_q.weight"].T
        k, v = (h @ t[p + "0.to_kv.weight"].T).chunk(2, dim=-1)
        q, k, v = (z.reshape(len(x), heads, -1).transpose(0, 1) for z in (q, k, v))
        q = q / q.norm(dim=-1, keepdim=True) * t[p + "0.q_scale"]
        k = k / k.norm(dim=-1, keepdim=True) * t[p + "0.k_scale"]
        attention = (torch.einsum("hid,hjd->hij", q, k) * 8).softmax(dim=-1)
        out = torch.einsum("hij,hjd->hid", attention, v).transpose(0, 1).reshape(len(x), -1)
        x = out @ t[p + "0.to_out.0.weight"].T + x
        h = norm(x, t[p + "1.0.learned_gamma"]) @ t[p + "1.1.weight"].T
        values, gate = h.chunk(2, dim=-1)
        x = (F.gelu(gate) * values) @ t[p + "1.4.weight"].T + x
    latent = F.linear(x.mean(dim=0), t["audio_to_latents.weight"], t["audio_to_latents.bias"])
    return (latent / latent.norm()).numpy()


def test_written_checkpoint_has_hub_layout(tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    assert {"mulan", "audio_model", "text_model", "audio_transformer", "text_transformer"} <= set(config)
    assert "w2v2_config" in json.loads((tiny_folder / MUQ_CONFIG).read_text())
    keys = set(load_file(tiny_folder / "model.safetensors"))
    assert "mulan.audio.model.model.conformer.layers.0.self_attn.linear_q.weight" in keys
    assert "mulan.audio.transformer.layers.1.0.to_kv.weight" in keys and "mulan.audio_to_latents.weight" in keys
    assert "mulan.text_to_latents.weight" in keys


def test_embed_contract(backend):
    assert backend.dim == 16
    assert_backend_contract(backend, make_clips(RATE, lengths=[3.0, 3.0, 1.0]))


@pytest.mark.slow
def test_matches_upstream_audio_path_clip_by_clip(backend, tiny_folder):
    track = make_clips(RATE, 5.0, seed=4)[1]  # 2 s clips: [0, 2), [2, 4), [4, 5) + [0, 1)
    clips = split_clips(track, CLIP)
    expected = np.stack([_reference_clip_latent(clip, tiny_folder) for clip in clips])
    (analysis,) = backend.analyze_frames([track])
    np.testing.assert_allclose(analysis.frames, expected, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(analysis.vector, expected.mean(axis=0), rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(analysis.frames, axis=1), 1.0, rtol=1e-5)


def test_clips_wrap_around_to_the_start():
    track = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(split_clips(track, 2), [[0, 1], [2, 3], [4, 0]])
    np.testing.assert_array_equal(split_clips(track, 5), [[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(split_clips(track[:3], 4), [[0, 1, 2, 0]])  # upstream's rule when >= half a clip
    np.testing.assert_array_equal(split_clips(track[:2], 5), [[0, 1, 0, 1, 0]])  # shorter: repeated to fill the clip


def test_only_the_audio_tower_is_built(backend):
    names = list(backend.model.state_dict())
    assert names and not any("text" in name for name in names)


@pytest.mark.slow
def test_paper_compat_pads_to_30_seconds_before_cutting_clips(tiny_folder, backend):
    paper = MuQMuLanBackend(paper_compat=True, device="cpu").load(tiny_folder)
    track = make_clips(RATE, 3.0)[0]
    (analysis,) = paper.analyze_frames([track])
    assert analysis.frames.shape == (15, 16)  # 30 s of 2-s clips, silence after the track
    padded = np.pad(track, (0, 30 * RATE - len(track)))
    np.testing.assert_allclose(analysis.vector, backend.embed([padded])[0], rtol=1e-4, atol=1e-5)


def test_fetch_from_folder_then_load_from_cache(tiny_folder):
    with pytest.raises(WeightsMissing, match=r"mrs-tui backends fetch muq_mulan"):
        MuQMuLanBackend().load()
    MuQMuLanBackend.fetch(source=tiny_folder)
    assert backend_status("muq_mulan").ready
    track = make_clips(RATE, 2.5)
    np.testing.assert_array_equal(
        load_backend("muq_mulan", device="cpu").embed(track),
        MuQMuLanBackend(device="cpu").load(tiny_folder).embed(track),
    )


def test_fetch_from_a_hub_download_takes_muq_config_from_the_muq_backend(tiny_folder, tmp_path):
    hub_like = _copy(tiny_folder, tmp_path / "hub")
    (hub_like / MUQ_CONFIG).unlink()
    with pytest.raises(WeightsMissing, match=f"lacks {MUQ_CONFIG}") as err:
        MuQMuLanBackend.fetch(source=hub_like)  # offline, and no MuQ installed
    assert "\n" not in str(err.value)

    muq_folder = tmp_path / "muq"
    muq_folder.mkdir()
    (muq_folder / "config.json").write_bytes((tiny_folder / MUQ_CONFIG).read_bytes())
    (muq_folder / "model.safetensors").write_bytes(b"")  # only the config matters here
    MuQBackend.fetch(source=muq_folder)
    target = MuQMuLanBackend.fetch(source=hub_like)
    assert (target / MUQ_CONFIG).read_bytes() == (tiny_folder / MUQ_CONFIG).read_bytes()
    assert json.loads((target / "config.json").read_text())["mulan"]["clip_secs"] == 2
    assert MuQMuLanBackend(device="cpu").load().loaded


def test_hub_fetch_takes_two_repositories(tiny_folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    with pytest.raises(WeightsMissing, match=r"offline"):
        MuQMuLanBackend.fetch()
    mulan_files = {name: tiny_folder / name for name in ("config.json", "model.safetensors")}
    fake_hub_cache(tmp_path, "OpenMuQ/MuQ-MuLan-large", mulan_files)
    fake_hub_cache(tmp_path, "OpenMuQ/MuQ-large-msd-iter", {"config.json": tiny_folder / MUQ_CONFIG})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    target = MuQMuLanBackend.fetch()
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", MUQ_CONFIG]
    assert (target / "config.json").read_bytes() == (tiny_folder / "config.json").read_bytes()
    assert MuQMuLanBackend(device="cpu").load().dim == 16


def test_missing_muq_config_or_wrong_checkpoint_are_one_line_errors(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "no-muq-config")
    (folder / MUQ_CONFIG).unlink()
    with pytest.raises(WeightsMissing, match=r"missing muq_config.json"):
        MuQMuLanBackend().load(folder)

    muq = write_random_checkpoint("muq", tmp_path / "muq")
    (muq / MUQ_CONFIG).write_bytes((muq / "config.json").read_bytes())
    with pytest.raises(BackendError, match=r"is not a MuQ-MuLan config .*use --backend muq"):
        MuQMuLanBackend().load(muq)

    text_only = _copy(tiny_folder, tmp_path / "text-only")
    tensors = load_file(text_only / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k.startswith("mulan.text")}, text_only / "model.safetensors")
    with pytest.raises(BackendError, match=r"no mulan.audio tensors"):
        MuQMuLanBackend().load(text_only)

    partial = _copy(tiny_folder, tmp_path / "partial")
    save_file(
        {k: v for k, v in tensors.items() if k != "mulan.audio.transformer.layers.1.1.4.weight"},
        partial / "model.safetensors",
    )
    with pytest.raises(BackendError, match=r"tensors missing, e.g. audio.transformer.layers.1.1.4.weight") as err:
        MuQMuLanBackend().load(partial)
    assert "\n" not in str(err.value)

    corrupt = _copy(tiny_folder, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(BackendError, match=r"not a readable safetensors file"):
        MuQMuLanBackend().load(corrupt)
