"""Music2Vec: a tiny random data2vec-audio model written in the hub layout, loaded the user's way."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from backends import WeightsMissing, embedding_version, weights_dir  # noqa: E402
from backends.base import BackendError  # noqa: E402
from backends.music2vec import Music2VecBackend  # noqa: E402
from backends.testing import write_random_checkpoint  # noqa: E402
from tests.backend_helpers import assert_backend_contract, fake_hub_cache, make_clips  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint("music2vec", tmp_path_factory.mktemp("music2vec"), seed=3)


@pytest.fixture(scope="module")
def backend(checkpoint) -> Music2VecBackend:
    return Music2VecBackend().load(checkpoint)


def direct_transformers_forward(folder: Path, wave: np.ndarray) -> np.ndarray:
    """What a user of transformers would get: Data2VecAudioModel on the processor-normalised clip."""
    raw = json.loads((folder / "config.json").read_text())
    raw["vocab_size"] = 32
    config = transformers.Data2VecAudioConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    model = transformers.Data2VecAudioModel.from_pretrained(folder, config=config, local_files_only=True).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        return model(inputs["input_values"]).last_hidden_state[0].numpy()


def test_checkpoint_has_the_upstream_layout_and_its_config_quirk(checkpoint):
    raw = json.loads((checkpoint / "config.json").read_text())
    assert raw["model_type"] == "data2vec-audio"
    assert isinstance(raw["vocab_size"], str)  # as published: a path, which strict validation rejects
    assert (checkpoint / "pytorch_model.bin").is_file()
    with pytest.raises(Exception, match="vocab_size"):
        transformers.Data2VecAudioModel.from_pretrained(checkpoint, local_files_only=True)


def test_embed_contract(backend):
    assert backend.sample_rate == 16000
    assert backend.dim == 32  # the loaded model's width, not the registry's 768
    assert_backend_contract(backend, make_clips(16000, 2.0, count=3))


@pytest.mark.slow
def test_unequal_lengths_batch_like_single(backend):
    assert_backend_contract(backend, make_clips(16000, lengths=[1.0, 2.5, 1.0, 0.01]))


def test_equals_a_direct_transformers_forward(backend, checkpoint):
    clip = make_clips(16000, 2.0)[1]
    expected_frames = direct_transformers_forward(checkpoint, clip)
    (analysis,) = backend.analyze_frames([clip])
    np.testing.assert_allclose(analysis.frames, expected_frames, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backend.embed([clip])[0], expected_frames.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert analysis.frames.shape == (99, 32)  # 50 frames per second of 16 kHz audio


def test_default_mode_ignores_loudness_paper_mode_does_not(checkpoint, backend):
    clip = make_clips(16000, 2.0)[0]
    quiet = 0.25 * clip
    np.testing.assert_allclose(backend.embed([quiet])[0], backend.embed([clip])[0], rtol=1e-3, atol=1e-4)
    paper = Music2VecBackend(paper_compat=True).load(checkpoint)
    loud_vs_quiet = paper.embed([clip, quiet])
    assert not np.allclose(loud_vs_quiet[0], loud_vs_quiet[1], rtol=1e-3, atol=1e-4)


def test_paper_mode_takes_24khz_and_pads_to_the_full_clip(checkpoint):
    paper = Music2VecBackend(paper_compat=True).load(checkpoint)
    assert paper.sample_rate == 24000  # the indexer hands it 24 kHz samples, as the paper did
    assert Music2VecBackend().sample_rate == 16000
    assert paper.version != Music2VecBackend().version == embedding_version("music2vec")
    clip = make_clips(24000, 1.0)[1]
    padded = np.pad(clip, (0, 30 * 24000 - len(clip)))
    np.testing.assert_allclose(paper.embed([clip]), paper.embed([padded]), rtol=1e-4, atol=1e-5)


def test_short_and_empty_batches(backend):
    assert backend.embed([]).shape == (0, 32)
    tiny = backend.embed([np.zeros(10, np.float32)])
    assert tiny.shape == (1, 32) and np.isfinite(tiny).all()


def test_fetch_from_folder_converts_to_safetensors_and_loads_from_the_cache(checkpoint, backend):
    target = Music2VecBackend.fetch(source=checkpoint)
    assert target == weights_dir("music2vec")
    assert (target / "model.safetensors").is_file()
    assert not (target / "pytorch_model.bin").exists()
    assert (checkpoint / "pytorch_model.bin").is_file()  # the user's folder is left alone
    cached = Music2VecBackend().load()
    assert cached.weights_path.name == "model.safetensors"
    clips = make_clips(16000, 1.5)
    np.testing.assert_array_equal(cached.embed(clips), backend.embed(clips))


def test_fetch_from_the_hub_cache_when_offline(checkpoint, backend, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = fake_hub_cache(
        tmp_path / "hub",
        "m-a-p/music2vec-v1",
        {"config.json": checkpoint / "config.json", "pytorch_model.bin": checkpoint / "pytorch_model.bin"},
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    target = Music2VecBackend.fetch()
    assert (target / "model.safetensors").is_file()
    clips = make_clips(16000, 1.0)
    np.testing.assert_array_equal(Music2VecBackend().load().embed(clips), backend.embed(clips))


def test_fetch_offline_without_a_cached_copy_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(WeightsMissing) as err:
        Music2VecBackend.fetch()
    message = str(err.value)
    assert "\n" not in message and "offline" in message and "--from FOLDER" in message


def test_missing_weights_name_the_fetch_command():
    with pytest.raises(WeightsMissing) as err:
        Music2VecBackend().load()
    assert "mrs-tui backends fetch music2vec" in str(err.value)


def test_a_mert_checkpoint_is_refused(tmp_path):

    folder = write_random_checkpoint("mert", tmp_path / "mert")
    with pytest.raises(BackendError, match="not a music2vec checkpoint"):
        Music2VecBackend().load(folder)
    with pytest.raises(BackendError, match="not a music2vec checkpoint"):
        Music2VecBackend.fetch(source=folder)


def test_weights_of_another_model_under_a_music2vec_config_are_refused(checkpoint, tmp_path):

    mert = write_random_checkpoint("mert", tmp_path / "mert")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    (mixed / "pytorch_model.bin").write_bytes((mert / "pytorch_model.bin").read_bytes())
    with pytest.raises(BackendError, match="do not match the music2vec architecture") as err:
        Music2VecBackend().load(mixed)
    assert "\n" not in str(err.value)


def test_corrupt_files_are_one_line_errors(checkpoint, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    (broken / "pytorch_model.bin").write_bytes((checkpoint / "pytorch_model.bin").read_bytes()[:5000])
    with pytest.raises(BackendError) as err:
        Music2VecBackend().load(broken)
    assert "pytorch_model.bin" in str(err.value) and "\n" not in str(err.value)

    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"config\.json: not a readable JSON config"):
        Music2VecBackend().load(broken)


def test_a_pickle_with_python_objects_needs_allow_pickle(checkpoint, backend, tmp_path):
    folder = tmp_path / "with-args"
    folder.mkdir()
    (folder / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    state = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    state["training_args"] = argparse.Namespace(lr=1e-4)
    torch.save(state, folder / "pytorch_model.bin")

    with pytest.raises(BackendError) as err:
        Music2VecBackend().load(folder)
    assert "--allow-pickle" in str(err.value)
    with pytest.raises(BackendError, match="--allow-pickle"):
        Music2VecBackend.fetch(source=folder)

    Music2VecBackend.fetch(source=folder, allow_pickle=True)
    clips = make_clips(16000, 1.0)
    np.testing.assert_array_equal(Music2VecBackend().load().embed(clips), backend.embed(clips))


def test_unknown_option_is_refused():
    with pytest.raises(BackendError, match="no option"):
        Music2VecBackend(variant="95m")
