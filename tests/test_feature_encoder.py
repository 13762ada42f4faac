"""The time-major waveform front end that the reduced precisions run: the same function as transformers'.

Tiny random MERT (HuBERT layout: GroupNorm folded into the first layer) and Music2Vec (data2vec
layout: a LayerNorm in every layer) from the test checkpoints, on clips of different loudness
batched together, so that a GroupNorm statistic taken over the wrong clip or the wrong axis shows.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backends import _feature_encoder, _precision, load_backend
from backends.testing import write_random_checkpoint

SAMPLE_RATES = {"mert": 24000, "music2vec": 16000}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-encoder")
    models = {}
    for name in SAMPLE_RATES:
        folder = write_random_checkpoint(name, root / name, size="tiny", seed=5)
        models[name] = load_backend(name, folder).model
    return models


def _waves(sample_rate: int) -> torch.Tensor:
    rng = np.random.default_rng(1)
    t = np.arange(int(1.3 * sample_rate)) / sample_rate
    quiet = 0.05 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))
    loud = 0.8 * np.sign(np.sin(2 * np.pi * 55 * t)) + 0.2 * rng.standard_normal(len(t))
    return torch.tensor(np.stack([quiet, loud]), dtype=torch.float32)


@pytest.mark.parametrize("name", sorted(SAMPLE_RATES))
def test_time_major_encoder_equals_the_transformers_encoder(name, tiny_models, monkeypatch):
    monkeypatch.setattr(_feature_encoder, "CHUNK_FRAMES", 97)  # several chunks per layer, the last one short
    reference = tiny_models[name].feature_extractor
    time_major = _feature_encoder.TimeMajorFeatureEncoder.from_encoder(reference)
    waves = _waves(SAMPLE_RATES[name])
    with torch.inference_mode():
        expected = reference(waves)
        got = time_major(waves)
        alone = time_major(waves[1:])
    assert got.shape == expected.shape  # (batch, channels, frames), as the model expects
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # A clip's features do not depend on the clip batched beside it (per-clip GroupNorm statistics).
    torch.testing.assert_close(alone[0], got[1], rtol=1e-5, atol=1e-5)


def test_the_folded_group_norm_follows_each_clips_statistics(tiny_models):
    """Without the fold, the first layer would have no norm at all: check the fold is what matters."""
    reference = tiny_models["mert"].feature_extractor
    first = reference.conv_layers[0]
    assert isinstance(first.layer_norm, torch.nn.GroupNorm)
    layer = _feature_encoder.TimeMajorConvLayer(first.conv, first.layer_norm, first.activation, torch.float32)
    waves = _waves(SAMPLE_RATES["mert"])
    with torch.inference_mode():
        got = layer(waves[:, :, None], torch.float32).transpose(1, 2)
        expected = first(waves[:, None])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bf16_precision_runs_the_time_major_encoder_in_bfloat16(tiny_models, monkeypatch):
    monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: True)
    model = copy.deepcopy(tiny_models["mert"])
    _precision.prepare_model(model, "bf16", "cpu")
    encoder = model.feature_extractor
    assert isinstance(encoder, _feature_encoder.TimeMajorFeatureEncoder)
    dtypes = [layer.weight.dtype for layer in encoder.layers]
    # The ten-tap waveform layer (with its folded GroupNorm) stays float32; the rest is bfloat16.
    assert dtypes == [torch.float32] + [torch.bfloat16] * (len(dtypes) - 1)
    waves = _waves(SAMPLE_RATES["mert"])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = encoder(waves)
    expected = tiny_models["mert"].feature_extractor(waves)
    assert got.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(got.float().flatten(1), expected.flatten(1))
    assert cosine.min() > 0.999


def test_fp32_keeps_the_transformers_encoder(tiny_models):
    model = copy.deepcopy(tiny_models["music2vec"])
    _precision.prepare_model(model, "fp32", "cpu")
    assert not isinstance(model.feature_extractor, _feature_encoder.TimeMajorFeatureEncoder)
