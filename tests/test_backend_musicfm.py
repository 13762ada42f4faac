"""MusicFM: a tiny random model in upstream's file layout, loaded through the user's code path."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from backends import backend_status, load_backend, weights_dir
from backends._conformer import MelSpectrogramDb
from backends.base import BackendError, WeightsMissing
from backends.musicfm import CHECKPOINT, SAFETENSORS, STATS, MusicFMBackend
from backends.testing import write_random_checkpoint
from tests.backend_helpers import assert_backend_contract, conformer_reference_frames, fake_hub_cache, make_clips

RATE = 24000


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return write_random_checkpoint("musicfm", tmp_path_factory.mktemp("musicfm"), size="tiny", seed=3)


@pytest.fixture(scope="module")
def backend(tiny_folder) -> MusicFMBackend:
    return MusicFMBackend(device="cpu").load(tiny_folder)


def _upstream_tensors(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("model.") :]: v for k, v in state.items()}


def test_written_checkpoint_has_upstream_layout(tiny_folder):
    checkpoint = torch.load(tiny_folder / CHECKPOINT, map_location="cpu", weights_only=True)
    keys = set(checkpoint["state_dict"])
    assert "model.conformer.layers.0.self_attn.linear_q.weight" in keys
    assert "model.conv.conv.0.conv1.weight" in keys
    assert "model.conformer.pos_conv_embed.conv.weight_g" in keys  # 2023-era weight-norm names
    assert "model.quantizer_melspec_2048_0.codebook" in keys
    stats = json.loads((tiny_folder / STATS).read_text())
    assert stats["melspec_2048_std"] > 0


def test_embed_contract(backend):
    assert backend.dim == 64  # the tiny model's width, read from the checkpoint
    assert_backend_contract(backend, make_clips(RATE, 1.5, count=3))


def test_clips_of_different_lengths_batch_like_single(backend):
    clips = make_clips(RATE, lengths=[1.0, 1.6, 1.0, 0.01])
    batch = backend.embed(clips)
    for index, clip in enumerate(clips):
        np.testing.assert_allclose(backend.embed([clip])[0], batch[index], rtol=1e-4, atol=1e-5)


def test_matches_an_independent_librosa_and_transformers_forward(backend, tiny_folder):
    clip = make_clips(RATE, 1.2, seed=7)[1]
    stats = json.loads((tiny_folder / STATS).read_text())
    expected = conformer_reference_frames(
        clip,
        _upstream_tensors(tiny_folder),
        mel_mean=stats["melspec_2048_mean"],
        mel_std=stats["melspec_2048_std"],
        num_heads=16,
    )
    (analysis,) = backend.analyze_frames([clip])
    mel_frames = len(clip) // 240  # 100 Hz, last frame dropped
    tokens = math.ceil(math.ceil(mel_frames / 2) / 2)  # two stride-2 convs: 25 Hz
    assert analysis.frames.shape == expected.shape == (tokens, 64)
    np.testing.assert_allclose(analysis.frames, expected, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(analysis.vector, expected.mean(axis=0), rtol=1e-3, atol=1e-4)


def test_mel_front_end_equals_librosa_htk_mel():
    import librosa

    wave = make_clips(RATE, 0.5)[0]
    ours = MelSpectrogramDb()(torch.from_numpy(wave)[None])[0].numpy()
    power = librosa.feature.melspectrogram(
        y=wave.astype(np.float64), sr=RATE, n_fft=2048, hop_length=240, htk=True, norm=None, pad_mode="reflect"
    )
    assert ours.shape == (128, len(wave) // 240)
    np.testing.assert_allclose(ours, 10 * np.log10(np.maximum(power, 1e-10))[:, :-1], atol=2e-3)


def test_mel_stays_float32_under_autocast():
    # A full-scale tone: its STFT power (~2.6e5) does not fit float16, and bfloat16 would round it.
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(RATE) / RATE).astype(np.float32)
    mel = MelSpectrogramDb()
    plain = mel(torch.from_numpy(tone)[None])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = mel(torch.from_numpy(tone)[None])
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain)


def test_hidden_state_numbering_follows_transformers_4(backend):
    model = backend.model
    tokens = model.conv(model.features(torch.from_numpy(make_clips(RATE, 0.5)[0])[None]))
    with torch.inference_mode():
        final = model.hidden_state(tokens, -1)
        np.testing.assert_array_equal(
            model.hidden_state(tokens, model.num_layers), final
        )  # layer_ix=12 on the real model
        np.testing.assert_array_equal(model.hidden_state(tokens, 0), tokens)  # the encoder's input
        positions = model.conformer.embed_positions(tokens)
        first = model.conformer.layers[0](tokens, relative_position_embeddings=positions)
        np.testing.assert_allclose(model.hidden_state(tokens, 1), first, atol=1e-6)
    with pytest.raises(BackendError, match=r"layer 5 does not exist"):
        model.hidden_state(tokens, 5)


def test_paper_compat_zero_pads_short_clips_to_30_seconds(tiny_folder, backend):
    paper = MusicFMBackend(paper_compat=True, device="cpu").load(tiny_folder)
    clip = make_clips(RATE, 1.0)[0]
    padded = np.pad(clip, (0, 30 * RATE - len(clip)))
    paper_vector = paper.embed([clip])
    np.testing.assert_allclose(paper_vector, backend.embed([padded]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(paper_vector, backend.embed([clip]), atol=1e-3)
    assert paper.version.endswith("+paper") and paper.version != backend.version


def test_load_uses_the_user_cache_and_reports_missing_weights(tiny_folder):
    with pytest.raises(WeightsMissing) as missing:
        MusicFMBackend().load()
    assert "mrs-tui backends fetch musicfm" in str(missing.value) and "\n" not in str(missing.value)
    assert backend_status("musicfm").state == "weights missing"

    MusicFMBackend.fetch(source=tiny_folder)
    cache = weights_dir("musicfm")
    assert (cache / SAFETENSORS).is_file() and not (cache / CHECKPOINT).exists()  # converted once, pickle gone
    assert backend_status("musicfm").ready
    from_cache = load_backend("musicfm", device="cpu")
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(from_cache.embed(clips), MusicFMBackend(device="cpu").load(tiny_folder).embed(clips))


def test_wrong_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(WeightsMissing, match=r"does not exist") as err:
        MusicFMBackend().load(tmp_path / "no-such-folder")
    assert "\n" not in str(err.value)
    (tmp_path / "other").mkdir()
    with pytest.raises(WeightsMissing, match=r"missing pretrained_msd.pt"):
        MusicFMBackend().load(tmp_path / "other")


def _copy(folder: Path, target: Path) -> Path:
    target.mkdir()
    for item in folder.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def test_truncated_checkpoint_is_a_clear_error(tiny_folder, tmp_path):
    broken = _copy(tiny_folder, tmp_path / "broken")
    data = (broken / CHECKPOINT).read_bytes()
    (broken / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(BackendError, match=r"corrupt") as err:
        MusicFMBackend().load(broken)
    assert "\n" not in str(err.value)


def test_damaged_stats_file_is_a_clear_error(tiny_folder, tmp_path):
    broken = _copy(tiny_folder, tmp_path / "stats")
    (broken / STATS).write_text('{"melspec_2048_mean": 1.0')
    with pytest.raises(BackendError, match=r"msd_stats.json: not a readable"):
        MusicFMBackend().load(broken)
    (broken / STATS).write_text('{"mfcc_mean": 1.0}')
    with pytest.raises(BackendError, match=r"no usable melspec_2048_mean"):
        MusicFMBackend().load(broken)


def test_checkpoint_of_another_backend_is_refused(tiny_folder, tmp_path):
    from transformers import HubertConfig, HubertModel

    other = _copy(tiny_folder, tmp_path / "mert")
    hubert = HubertModel(
        HubertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7
        )
    )
    torch.save({"state_dict": {"model." + k: v for k, v in hubert.state_dict().items()}}, other / CHECKPOINT)
    with pytest.raises(BackendError, match=r"is not a MusicFM checkpoint") as err:
        MusicFMBackend().load(other)
    assert "\n" not in str(err.value)

    torch.save({"mulan.audio.proj.weight": torch.zeros(2, 2)}, other / CHECKPOINT)
    with pytest.raises(BackendError, match=r"no 'model.' tensors"):
        MusicFMBackend().load(other)


def test_checkpoint_with_missing_encoder_tensors_is_refused_not_half_loaded(tiny_folder, tmp_path):
    partial = _copy(tiny_folder, tmp_path / "partial")
    state = torch.load(partial / CHECKPOINT, weights_only=True)
    del state["state_dict"]["model.conformer.layers.1.ffn2.output_dense.weight"]
    torch.save(state, partial / CHECKPOINT)
    with pytest.raises(
        BackendError, match=r"1 of .* tensors missing, e.g. conformer.layers.1.ffn2.output_dense.weight"
    ):
        MusicFMBackend().load(partial)


def test_pickle_with_python_objects_needs_allow_pickle(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "lightning")
    state = torch.load(folder / CHECKPOINT, weights_only=True)
    state["hyper_parameters"] = pickle.loads(pickle.dumps(Path("/some/where")))  # a class outside the allowlist
    torch.save(state, folder / CHECKPOINT)

    with pytest.raises(BackendError, match=r"--allow-pickle") as err:
        MusicFMBackend().load(folder)
    assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match=r"--allow-pickle"):
        MusicFMBackend.fetch(source=folder)

    MusicFMBackend.fetch(source=folder, allow_pickle=True)
    converted = MusicFMBackend(device="cpu").load()
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(converted.embed(clips), MusicFMBackend(device="cpu").load(tiny_folder).embed(clips))


def test_hub_fetch_respects_offline_mode():
    with pytest.raises(WeightsMissing, match=r"offline") as err:
        MusicFMBackend.fetch()
    assert "\n" not in str(err.value)


def test_hub_fetch_from_the_local_hub_cache_converts_to_safetensors(tiny_folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    files = {name: tiny_folder / name for name in (CHECKPOINT, STATS)}
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(fake_hub_cache(tmp_path, "minzwon/MusicFM", files))
    )
    target = MusicFMBackend.fetch()
    assert sorted(p.name for p in target.iterdir()) == [STATS, SAFETENSORS]
    clips = make_clips(RATE, 1.0)
    np.testing.assert_array_equal(
        MusicFMBackend(device="cpu").load().embed(clips), MusicFMBackend(device="cpu").load(tiny_folder).embed(clips)
    )


def test_cli_fetch_list_and_embed(tiny_folder, tmp_path, capsys):
    import soundfile as sf

    from mrs_tui.cli import main

    assert main(["backends", "fetch", "musicfm", "--from", str(tiny_folder)]) == 0
    capsys.readouterr()
    assert main(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["musicfm"]["status"] == "ready" and rows["musicfm"]["dim"] == 1024

    clip = make_clips(RATE, 1.5)[1]
    path = tmp_path / "clip.wav"
    sf.write(path, clip, RATE, subtype="FLOAT")
    assert main(["embed", str(path), "--backend", "musicfm", "--frames", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["dim"] == 64 and len(result["frames"][0]) == 64
    expected = MusicFMBackend(device="cpu").load(tiny_folder).embed([clip])[0]
    np.testing.assert_allclose(result["embedding"], expected, rtol=1e-4, atol=1e-5)
