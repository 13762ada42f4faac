"""MERT: tiny random models written in the hub's remote-code layout, run as HubertModel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from backends import WeightsMissing, weights_dir  # noqa: E402
from backends.base import BackendError  # noqa: E402
from backends.mert import MertBackend  # noqa: E402
from backends.testing import write_random_checkpoint  # noqa: E402
from tests.backend_helpers import assert_backend_contract, fake_hub_cache, make_clips  # noqa: E402

RATE = 24000


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mert")
    return {
        variant: write_random_checkpoint("mert", root / variant, variant=variant, seed=7) for variant in ("330m", "95m")
    }


@pytest.fixture(scope="module")
def backend(checkpoints) -> MertBackend:
    return MertBackend().load(checkpoints["330m"])


def direct_hubert_forward(folder: Path, wave: np.ndarray) -> np.ndarray:
    """HubertModel.from_pretrained on the same folder, fed what the hub processor produces."""
    raw = json.loads((folder / "config.json").read_text())
    config = transformers.HubertConfig(**{k: v for k, v in raw.items() if k not in ("model_type", "auto_map")})
    model = transformers.HubertModel.from_pretrained(folder, config=config, local_files_only=True).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, do_normalize=True)
    inputs = extractor(wave, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        return model(inputs["input_values"]).last_hidden_state[0].numpy()


def test_checkpoint_has_the_remote_code_layout(checkpoints):
    raw = json.loads((checkpoints["330m"] / "config.json").read_text())
    assert raw["model_type"] == "mert_model" and "AutoModel" in raw["auto_map"]
    assert raw["feature_extractor_cqt"] is False and raw["deepnorm"] is False and raw["attention_relax"] == 32.0
    state = torch.load(checkpoints["330m"] / "pytorch_model.bin", weights_only=True)
    assert "encoder.pos_conv_embed.conv.weight_g" in state and "encoder.pos_conv_embed.conv.weight_v" in state
    assert not any("parametrizations" in key for key in state)


@pytest.mark.parametrize("variant", ["330m", "95m"])
def test_embed_contract(checkpoints, variant):
    backend = MertBackend(variant=variant).load(checkpoints[variant])
    assert backend.sample_rate == RATE and backend.dim == 32
    assert_backend_contract(backend, make_clips(RATE, 2.0, count=3))


@pytest.mark.slow
def test_unequal_lengths_batch_like_single(backend):
    assert_backend_contract(backend, make_clips(RATE, lengths=[1.0, 2.0, 1.0, 0.01]))


@pytest.mark.parametrize("variant", ["330m", "95m"])
def test_equals_a_direct_hubert_forward(checkpoints, variant):
    backend = MertBackend(variant=variant).load(checkpoints[variant])
    clip = make_clips(RATE, 2.0)[0]
    expected = direct_hubert_forward(checkpoints[variant], clip)
    (analysis,) = backend.analyze_frames([clip])
    assert analysis.frames.shape == (149, 32)  # 75 frames per second of 24 kHz audio
    np.testing.assert_allclose(analysis.frames, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backend.embed([clip])[0], expected.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_weight_norm_weights_are_really_loaded(checkpoints, backend):
    """A loader that dropped the old weight_g/weight_v names would fall back to random values."""
    state = torch.load(checkpoints["330m"] / "pytorch_model.bin", weights_only=True)
    conv = backend.model.encoder.pos_conv_embed.conv
    np.testing.assert_array_equal(
        conv.parametrizations.weight.original0.detach().numpy(), state["encoder.pos_conv_embed.conv.weight_g"].numpy()
    )
    np.testing.assert_array_equal(
        conv.parametrizations.weight.original1.detach().numpy(), state["encoder.pos_conv_embed.conv.weight_v"].numpy()
    )


def test_variants_differ_in_width_and_version_and_are_checked(checkpoints):
    assert MertBackend().dim == 1024 and MertBackend(variant="95m").dim == 768
    assert MertBackend(variant="95m").version != MertBackend().version
    with pytest.raises(BackendError, match="variant=95m"):
        MertBackend().load(checkpoints["95m"])
    with pytest.raises(BackendError, match="variant=330m"):
        MertBackend(variant="95m").load(checkpoints["330m"])
    with pytest.raises(BackendError, match="no variant"):
        MertBackend(variant="1b")


@pytest.mark.parametrize("switch", ["feature_extractor_cqt", "deepnorm"])
def test_configs_that_need_the_remote_code_are_refused(checkpoints, tmp_path, switch):
    folder = tmp_path / switch
    folder.mkdir()
    raw = json.loads((checkpoints["330m"] / "config.json").read_text())
    raw[switch] = True
    (folder / "config.json").write_text(json.dumps(raw))
    (folder / "pytorch_model.bin").write_bytes((checkpoints["330m"] / "pytorch_model.bin").read_bytes())
    with pytest.raises(BackendError, match=f"{switch} is on") as err:
        MertBackend().load(folder)
    assert "\n" not in str(err.value)


def test_a_speech_hubert_config_is_refused(checkpoints, tmp_path):
    folder = tmp_path / "speech"
    folder.mkdir()
    raw = json.loads((checkpoints["330m"] / "config.json").read_text())
    raw.update(model_type="hubert", sample_rate=16000)
    (folder / "config.json").write_text(json.dumps(raw))
    (folder / "pytorch_model.bin").write_bytes((checkpoints["330m"] / "pytorch_model.bin").read_bytes())
    with pytest.raises(BackendError, match="16000 Hz"):
        MertBackend().load(folder)


@pytest.mark.slow
def test_paper_mode_feeds_raw_samples_padded_to_30s(checkpoints, backend):
    paper = MertBackend(paper_compat=True).load(checkpoints["330m"])
    clip = make_clips(RATE, 1.0)[1]
    np.testing.assert_allclose(backend.embed([0.3 * clip]), backend.embed([clip]), rtol=1e-3, atol=1e-4)
    assert not np.allclose(paper.embed([0.3 * clip]), paper.embed([clip]), rtol=1e-3, atol=1e-4)
    padded = np.pad(clip, (0, 30 * RATE - len(clip)))
    np.testing.assert_allclose(paper.embed([clip]), paper.embed([padded]), rtol=1e-4, atol=1e-5)


def test_prefixed_checkpoint_loads(checkpoints, backend, tmp_path):
    folder = tmp_path / "prefixed"
    folder.mkdir()
    (folder / "config.json").write_bytes((checkpoints["330m"] / "config.json").read_bytes())
    state = torch.load(checkpoints["330m"] / "pytorch_model.bin", weights_only=True)
    torch.save({f"mert_model.{k}": v for k, v in state.items()}, folder / "pytorch_model.bin")
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(MertBackend().load(folder).embed(clips), backend.embed(clips))


def test_a_checkpoint_missing_a_layer_is_refused(checkpoints, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "config.json").write_bytes((checkpoints["330m"] / "config.json").read_bytes())
    state = torch.load(checkpoints["330m"] / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if ".layers.1." not in k}, folder / "pytorch_model.bin")
    with pytest.raises(BackendError, match=r"missing encoder\.layers\.1\.") as err:
        MertBackend().load(folder)
    assert "\n" not in str(err.value)


def test_music2vec_checkpoint_is_refused(tmp_path):

    folder = write_random_checkpoint("music2vec", tmp_path / "m2v")
    with pytest.raises(BackendError, match="not a mert checkpoint"):
        MertBackend().load(folder)


def test_fetch_puts_each_variant_in_its_own_folder(checkpoints, backend):
    assert MertBackend.fetch(source=checkpoints["95m"]) == weights_dir("mert") / "95m"
    with pytest.raises(WeightsMissing, match="mrs-tui backends fetch mert"):
        MertBackend().load()  # the 330M folder is still empty
    small = MertBackend(variant="95m").load()
    assert small.weights_path == weights_dir("mert") / "95m" / "model.safetensors"

    assert MertBackend.fetch(source=checkpoints["330m"]) == weights_dir("mert")
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(MertBackend().load().embed(clips), backend.embed(clips))
    assert MertBackend(variant="95m").load().weights_path.parent.name == "95m"


def test_hub_fetch_of_the_small_variant_keeps_the_large_one(checkpoints, tmp_path, monkeypatch):
    import huggingface_hub.constants

    files = {name: checkpoints["95m"] / name for name in ("config.json", "pytorch_model.bin")}
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(fake_hub_cache(tmp_path, "m-a-p/MERT-v1-95M", files))
    )
    MertBackend.fetch(source=checkpoints["330m"])
    assert MertBackend.fetch(variant="95m") == weights_dir("mert") / "95m"
    assert MertBackend().load().dim == 32 and MertBackend(variant="95m").load().dim == 32
    raw = json.loads((weights_dir("mert") / "config.json").read_text())
    assert raw["do_stable_layer_norm"] is True  # the 330M config was not overwritten
