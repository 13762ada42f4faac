"""MuQ: a tiny random model in the hub layout (config.json + model.safetensors), loaded like real weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from backends import backend_status, load_backend, weights_dir
from backends.base import BackendError, WeightsMissing
from backends.muq import MuQBackend
from backends.testing import write_random_checkpoint
from tests.backend_helpers import assert_backend_contract, conformer_reference_frames, fake_hub_cache, make_clips

RATE = 24000


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return write_random_checkpoint("muq", tmp_path_factory.mktemp("muq"), size="tiny", seed=5)


@pytest.fixture(scope="module")
def backend(tiny_folder) -> MuQBackend:
    return MuQBackend(device="cpu").load(tiny_folder)


def _copy(folder: Path, target: Path) -> Path:
    target.mkdir()
    for item in folder.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def _inner_tensors(folder: Path) -> dict:
    return {k[len("model.") :]: v for k, v in load_file(folder / "model.safetensors").items()}


def test_written_checkpoint_has_hub_layout(tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    assert {"stat", "w2v2_config", "encoder_dim", "label_rate"} <= set(config)
    assert config["w2v2_config"]["position_embeddings_type"] == "rotary"
    keys = set(load_file(tiny_folder / "model.safetensors"))
    assert "model.conformer.layers.1.conv_module.depthwise_conv.weight" in keys
    assert "model.quantizer_melspec_2048.codebook" in keys and "model.cls_token" in keys


def test_embed_contract(backend):
    assert backend.dim == 64
    assert_backend_contract(backend, make_clips(RATE, 1.5, count=3))


def test_matches_an_independent_librosa_and_transformers_forward(backend, tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    clip = make_clips(RATE, 1.0, seed=11)[0]
    expected = conformer_reference_frames(
        clip,
        _inner_tensors(tiny_folder),
        mel_mean=config["stat"]["melspec_2048_mean"],
        mel_std=config["stat"]["melspec_2048_std"],
        num_heads=config["w2v2_config"]["num_attention_heads"],
    )
    (analysis,) = backend.analyze_frames([clip])
    np.testing.assert_allclose(analysis.frames, expected, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(backend.embed([clip])[0], expected.mean(axis=0), rtol=1e-3, atol=1e-4)


def test_config_label_rate_sets_the_token_rate(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "50hz")
    config = json.loads((folder / "config.json").read_text())
    config["label_rate"] = 50
    (folder / "config.json").write_text(json.dumps(config))
    clip = make_clips(RATE, 1.0)[1]
    (analysis,) = MuQBackend(device="cpu").load(folder).analyze_frames([clip])
    assert analysis.frames.shape[0] == 50  # 1 s at 50 Hz (25 Hz by default)
    expected = conformer_reference_frames(
        clip,
        _inner_tensors(folder),
        mel_mean=config["stat"]["melspec_2048_mean"],
        mel_std=config["stat"]["melspec_2048_std"],
        num_heads=config["w2v2_config"]["num_attention_heads"],
        time_strides=(2, 1),
    )
    np.testing.assert_allclose(analysis.frames, expected, rtol=1e-3, atol=2e-4)


def test_fetch_from_folder_then_load_from_cache(tiny_folder):
    with pytest.raises(WeightsMissing, match=r"mrs-tui backends fetch muq"):
        MuQBackend().load()
    MuQBackend.fetch(source=tiny_folder)
    assert backend_status("muq").ready
    assert (weights_dir("muq") / "model.safetensors").is_file()
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(
        load_backend("muq", device="cpu").embed(clips), MuQBackend(device="cpu").load(tiny_folder).embed(clips)
    )


def test_hub_fetch_respects_offline_mode(tiny_folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    with pytest.raises(WeightsMissing, match=r"offline"):
        MuQBackend.fetch()
    files = {name: tiny_folder / name for name in ("config.json", "model.safetensors")}
    cache = fake_hub_cache(tmp_path, "OpenMuQ/MuQ-large-msd-iter", files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    MuQBackend.fetch()  # found in the local hub cache, no network needed
    assert backend_status("muq").ready


def test_wrong_folder_and_corrupt_file_are_one_line_errors(tiny_folder, tmp_path):
    with pytest.raises(WeightsMissing, match=r"does not exist"):
        MuQBackend().load(tmp_path / "nowhere")
    broken = _copy(tiny_folder, tmp_path / "broken")
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(BackendError, match=r"not a readable safetensors file") as err:
        MuQBackend().load(broken)
    assert "\n" not in str(err.value)
    (broken / "model.safetensors").write_bytes(data)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"config.json: not a readable MuQ config"):
        MuQBackend().load(broken)


def test_config_that_does_not_match_the_weights_is_refused(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "mismatch")
    config = json.loads((folder / "config.json").read_text())
    config["encoder_depth"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match=r"not a MuQ checkpoint .* tensors missing, e.g. conformer.layers.2"):
        MuQBackend().load(folder)
    config["encoder_depth"], config["conv_dim"] = 2, 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match=r"tensor conv\.conv\.0\.\S+ has shape \(8,.*config says \(16,"):
        MuQBackend().load(folder)
    del config["stat"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match=r"no 'stat' section"):
        MuQBackend().load(folder)


def test_checkpoints_of_other_backends_are_refused(tiny_folder, tmp_path):

    mulan = write_random_checkpoint("muq_mulan", tmp_path / "mulan")
    with pytest.raises(BackendError, match=r"belongs to MuQ-MuLan, not MuQ — use --backend muq_mulan"):
        MuQBackend().load(mulan)

    other = _copy(tiny_folder, tmp_path / "other")
    tensors = load_file(other / "model.safetensors")
    renamed = {k.replace("model.conformer.", "model.encoder."): v for k, v in tensors.items()}
    save_file(renamed, other / "model.safetensors")
    with pytest.raises(BackendError, match=r"is not a MuQ checkpoint") as err:
        MuQBackend().load(other)
    assert "\n" not in str(err.value)
