"""MusiCNN: real weights from the musicnn 0.1.0 wheel, equivalence with the original TensorFlow code.

The reference folder holds the original extractor's outputs on real music excerpts and synthetic
signals (see its README); the port must reproduce them patch by patch. Weights come from the real
wheel, fetched once per machine (tests/musicnn_support.py).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from backends import backend_status, default_backend_name, load_backend, weights_dir
from backends.base import BackendError, WeightsMissing
from backends.musicnn import (
    INFERENCE_TENSORS,
    PATCH_FRAMES,
    PATCH_SAMPLES,
    WHEEL_FILENAME,
    LogMel,
    MusicnnBackend,
    convert_wheel,
    labels,
    pinned_sha256,
    to_patches,
)
from backends.testing import write_random_checkpoint
from mrs_tui.cli import main
from tests.musicnn_support import fetch_wheel, reference_clips, require_reference

MODELS = ("MSD_musicnn", "MTT_musicnn")
# The tag vocabularies shipped in data/backends/musicnn/.
MSD_LABELS = labels("MSD_musicnn")
MTT_LABELS = labels("MTT_musicnn")


@pytest.fixture(scope="session")
def wheel(request, tmp_path_factory) -> Path:
    return fetch_wheel(request, tmp_path_factory)


@pytest.fixture(scope="session")
def converted(wheel, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("musicnn-weights")
    convert_wheel(wheel, folder)
    return folder


@pytest.fixture(scope="session")
def backends_by_model(converted) -> dict[str, MusicnnBackend]:
    return {model: MusicnnBackend(model=model).load(converted) for model in MODELS}


@pytest.fixture
def installed(converted) -> Path:
    """The converted weights in this test's (isolated) user cache."""
    target = weights_dir("musicnn")
    shutil.copytree(converted, target)
    return target


def _audio(reference: Path, name: str) -> np.ndarray:
    samples, rate = sf.read(reference / name, dtype="float32")
    assert rate == 16000
    return samples


# -- shipped assets ----------------------------------------------------------------------------------


def test_the_shipped_tag_vocabularies_and_checksums_are_complete():
    for model in MODELS:
        tags = labels(model)
        assert len(tags) == len(set(tags)) == 50
        for suffix in (".index", ".data-00000-of-00001"):
            assert len(bytes.fromhex(pinned_sha256(f"musicnn/{model}/{suffix}"))) == 32
    assert MSD_LABELS[:3] == ("rock", "pop", "alternative") and MTT_LABELS[-1] == "choral"
    assert len(bytes.fromhex(pinned_sha256(WHEEL_FILENAME))) == 32


# -- preprocessing (no weights needed) ----------------------------------------------------------------


def test_mel_filterbank_is_librosas_slaney_filterbank():
    reference = require_reference()
    expected = np.load(reference / "mel_filterbank.npz")["mel_basis"]
    np.testing.assert_array_equal(LogMel().mel_t.T, expected)


def test_log_mel_patches_match_what_the_original_fed_its_network():
    reference = require_reference()
    clips = reference_clips(reference, "MSD_musicnn")
    assert len(clips) == 8
    logmel = LogMel()
    for path in clips:
        data = np.load(path)
        (patches,) = (to_patches(m) for m in logmel([_audio(reference, str(data["audio_file"]))]))
        expected = data["logmel_batch"]
        assert patches.shape == expected.shape, path.name
        assert np.isfinite(patches).all()
        difference = np.abs(patches - expected)
        # numpy's float32 log10 is dispatched by CPU (AVX-512 and AVX2 builds round differently
        # by up to 2 units in the last place), so bit-identity holds on some machines only.
        # Within 2 ulp everywhere but for values next to a float16 rounding boundary:
        ulps = np.abs(patches.view(np.int32).astype(np.int64) - expected.view(np.int32).astype(np.int64))
        assert (ulps <= 2).mean() > 0.999, path.name
        assert difference.max() <= 5e-4, path.name


def test_patches_drop_the_tail_and_repeat_short_clips():
    rng = np.random.default_rng(0)
    logmel = LogMel()
    (frames,) = logmel([rng.uniform(-0.5, 0.5, 16000 * 30).astype(np.float32)])
    assert len(frames) == 1876  # 1 + 480000 // 256
    patches = to_patches(frames)
    assert patches.shape == (10, PATCH_FRAMES, 96)
    np.testing.assert_array_equal(patches.reshape(-1, 96), frames[:1870])

    (just_enough,) = logmel([rng.uniform(-0.5, 0.5, PATCH_SAMPLES).astype(np.float32)])
    assert len(just_enough) == PATCH_FRAMES
    np.testing.assert_array_equal(to_patches(just_enough)[0], just_enough)

    (short,) = logmel([rng.uniform(-0.5, 0.5, 16000).astype(np.float32)])  # 1 s: 63 frames
    (patch,) = to_patches(short)
    np.testing.assert_array_equal(patch, short[np.arange(PATCH_FRAMES) % len(short)])


# -- the network against the original -------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_port_matches_the_original_on_every_reference_clip(backends_by_model, model):
    """From the audio file to the taggram and penultimate layer, per patch, as the issue demands."""
    reference = require_reference()
    backend = backends_by_model[model]
    clips = reference_clips(reference, model)
    data = [np.load(path) for path in clips]
    waves = [_audio(reference, str(d["audio_file"])) for d in data]
    outputs = backend.track_outputs(waves)
    for path, expected, got in zip(clips, data, outputs, strict=True):
        assert list(expected["tags"]) == list(backend.labels)
        assert got.taggram.shape == expected["taggram"].shape, path.name
        np.testing.assert_allclose(got.taggram, expected["taggram"], rtol=0, atol=1e-4, err_msg=path.name)
        np.testing.assert_allclose(got.penultimate, expected["penultimate"], rtol=0, atol=2e-4, err_msg=path.name)


def test_pooled_features_match_on_the_exact_network_input(backends_by_model):
    reference = require_reference()
    backend = backends_by_model["MSD_musicnn"]
    for name in ("synthetic_sine440", "synthetic_white_noise"):
        expected = np.load(reference / f"{name}__MSD_musicnn.npz")
        out = backend.run_patches(expected["logmel_batch"])
        np.testing.assert_allclose(out.logits.numpy(), expected["logits"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(out.mean_pool.numpy(), expected["mean_pool"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out.max_pool.numpy(), expected["max_pool"], rtol=1e-4, atol=1e-3)


def test_each_layer_matches_the_original_intermediates(backends_by_model):
    reference = require_reference()
    expected = np.load(reference / "intermediates__nexuiz_ninesix__MSD_musicnn.npz")
    net = backends_by_model["MSD_musicnn"].net
    patch = torch.from_numpy(expected["logmel_patch"])
    with torch.inference_mode():
        front = net.front_end(patch).transpose(1, 2).numpy()  # (1, 187, 561), TF's layout
        m1 = net.mid[0](net.front_end(patch)).numpy()
        out = net(patch)
    edges = np.cumsum([0, 204, 204, 51, 51, 51])
    for key, first, last in zip(("f74", "f77", "s1", "s2", "s3"), edges[:-1], edges[1:], strict=True):
        np.testing.assert_allclose(front[..., first:last], expected[f"{key}_pooled"], rtol=1e-4, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(m1[..., None], expected["mid_bn1_t"].transpose(0, 2, 1, 3), atol=1e-4)
    np.testing.assert_allclose(out.max_pool.numpy(), expected["back_max_pool"][..., 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out.mean_pool.numpy(), expected["back_mean_pool"][..., 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out.penultimate.numpy(), expected["penultimate"], atol=1e-4)
    np.testing.assert_allclose(out.taggram.numpy(), expected["taggram"], atol=1e-5)


# -- track vectors and tags -------------------------------------------------------------------------------


def test_track_vector_is_the_mean_of_the_correct_patches_and_paper_compat_reproduces_the_bug(converted):
    reference = require_reference()
    expected = np.load(reference / "synthetic_white_noise__MSD_musicnn.npz")
    wave = _audio(reference, "synthetic_white_noise.wav")
    correct = MusicnnBackend().load(converted)
    paper = MusicnnBackend(paper_compat=True).load(converted)
    (vector,) = correct.embed([wave])
    (paper_vector,) = paper.embed([wave])
    np.testing.assert_allclose(vector, expected["penultimate"].mean(axis=0), atol=2e-4)
    # What the PyPI extractor's rows average to: patch 0 only.
    np.testing.assert_allclose(paper_vector, expected["penultimate_extractor"].mean(axis=0), atol=2e-4)
    (frames,) = paper.analyze_frames([wave])
    np.testing.assert_allclose(paper_vector, frames.frames[0], atol=0)
    assert np.abs(vector - paper_vector).max() > 0.1
    assert paper.version != correct.version and paper.version.endswith("+paper")


def test_short_clips_are_repeat_padded_not_rejected(backends_by_model):
    backend = backends_by_model["MSD_musicnn"]
    one_second = (0.3 * np.sin(2 * np.pi * 330 * np.arange(16000) / 16000)).astype(np.float32)
    (result,) = backend.analyze_frames([one_second])
    assert result.frames.shape == (1, 200) and np.isfinite(result.vector).all()
    np.testing.assert_allclose(result.vector, result.frames[0])
    (patch,) = backend.patches([one_second])
    frames = LogMel()([one_second])[0]
    np.testing.assert_array_equal(patch[0], frames[np.arange(PATCH_FRAMES) % len(frames)])
    with pytest.raises(BackendError, match="empty waveform"):
        backend.embed([np.zeros(0, np.float32)])


def test_tags_come_from_the_taggram_averaged_over_patches(backends_by_model):
    reference = require_reference()
    expected = np.load(reference / "nexuiz_ninesix__MSD_musicnn.npz")
    backend = backends_by_model["MSD_musicnn"]
    (analysis,) = backend.analyze([_audio(reference, "nexuiz_ninesix.flac")])
    tags = analysis.extras["tags"]
    mean = expected["taggram"].mean(axis=0)
    best = [MSD_LABELS[i] for i in np.argsort(-mean)[:3]]
    assert [tag for tag, _ in tags[:3]] == best
    assert tags[0][1] == pytest.approx(float(mean.max()), abs=1e-3)
    assert [p for _, p in tags] == sorted((p for _, p in tags), reverse=True)
    json.dumps(analysis.extras)  # stored as JSON by the store


def test_mtt_model_uses_its_own_labels_and_version(backends_by_model, converted):
    mtt = backends_by_model["MTT_musicnn"]
    assert mtt.labels == MTT_LABELS and mtt.net.output.out_features == 50
    assert mtt.version != MusicnnBackend().version
    assert MusicnnBackend(model="msd").model == "MSD_musicnn"
    with pytest.raises(BackendError, match="unknown MusiCNN model"):
        MusicnnBackend(model="gtzan")


# -- loading, fetching and the CLI ------------------------------------------------------------------------


def test_random_weights_in_the_stored_layout_load_and_bad_files_are_refused(tmp_path):
    """A random model saved the way `fetch` stores the real one loads through the same path."""
    from safetensors.numpy import save_file

    kernels = {
        "conv2d": (7, 38, 1, 204),
        "conv2d_1": (7, 67, 1, 204),
        "conv2d_2": (128, 1, 1, 51),
        "conv2d_3": (64, 1, 1, 51),
        "conv2d_4": (32, 1, 1, 51),
        "conv2d_5": (7, 561, 1, 64),
        "conv2d_6": (7, 64, 1, 64),
        "conv2d_7": (7, 64, 1, 64),
        "dense": (1506, 200),
        "dense_1": (200, 50),
    }
    bn_channels = dict(zip(
        ["batch_normalization"] + [f"batch_normalization_{i}" for i in range(1, 11)],
        (1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200),
        strict=True,
    ))  # fmt: skip
    rng = np.random.default_rng(3)
    tensors = {}
    for name in INFERENCE_TENSORS:
        layer, part = name.split("/")
        shape = (
            kernels[layer] if part == "kernel" else (kernels[layer][-1],) if part == "bias" else (bn_channels[layer],)
        )
        value = rng.standard_normal(shape).astype(np.float32) * 0.1
        tensors[name] = np.abs(value) + 0.5 if part == "moving_variance" else value
    save_file(tensors, str(tmp_path / "MSD_musicnn.safetensors"))
    backend = MusicnnBackend().load(tmp_path)
    assert backend.embed([np.zeros(16000 * 4, np.float32)]).shape == (1, 200)
    np.testing.assert_array_equal(backend.net.dense.weight.numpy(), tensors["dense/kernel"].T)
    np.testing.assert_array_equal(
        backend.net.timbral_b.conv.weight.numpy()[5, 0], tensors["conv2d_1/kernel"][:, :, 0, 5]
    )

    del tensors["dense/bias"]
    save_file(tensors, str(tmp_path / "MSD_musicnn.safetensors"))
    with pytest.raises(BackendError, match="lack 1 tensors"):
        MusicnnBackend().load(tmp_path)
    tensors["dense/bias"] = np.zeros(199, np.float32)
    save_file(tensors, str(tmp_path / "MSD_musicnn.safetensors"))
    with pytest.raises(BackendError, match=r"dense/bias has shape \(199,\)"):
        MusicnnBackend().load(tmp_path)
    with pytest.raises(WeightsMissing, match="does not exist"):
        MusicnnBackend(model="mtt").load(tmp_path)


def test_stored_weights_round_trip_through_the_model(converted, tmp_path):
    from safetensors.numpy import load_file

    stored = load_file(str(converted / "MTT_musicnn.safetensors"))
    assert sorted(stored) == sorted(INFERENCE_TENSORS)
    back = MusicnnBackend(model="mtt").load(converted).net.to_tf_tensors()
    assert all(np.array_equal(back[name], stored[name]) for name in stored)
    # The random models the benchmarks use load through the same path.
    write_random_checkpoint("musicnn", tmp_path, size="real")
    assert MusicnnBackend(model="mtt").load(tmp_path).embed([np.ones(50000, np.float32)]).shape == (1, 200)


def test_fetch_from_the_wheel_makes_musicnn_ready_and_default(wheel, capsys):
    assert default_backend_name() == "mfcc"
    assert main(["backends", "fetch", "musicnn", "--from", str(wheel)]) == 0
    assert "weights ready" in capsys.readouterr().out
    folder = weights_dir("musicnn")
    assert sorted(p.name for p in folder.iterdir()) == ["MSD_musicnn.safetensors", "MTT_musicnn.safetensors"]
    assert backend_status("musicnn").ready and default_backend_name() == "musicnn"
    assert main(["--json", "backends"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["musicnn"]["status"] == "ready" and rows["musicnn"]["default"]
    assert rows["musicnn"]["weights_license"].startswith("ISC") and "musicnn" in rows["musicnn"]["source"]
    assert not rows["mfcc"]["default"]
    assert main(["backends"]) == 0
    listing = capsys.readouterr().out
    assert "*musicnn    ready" in listing and "weights from PyPI wheel musicnn==0.1.0" in listing


def test_fetch_from_a_folder_holding_the_wheel_or_its_unpacked_files(wheel, tmp_path):
    holder = tmp_path / "downloads"
    holder.mkdir()
    shutil.copy(wheel, holder / WHEEL_FILENAME)
    assert MusicnnBackend.fetch(source=holder) == weights_dir("musicnn")
    shutil.rmtree(weights_dir("musicnn"))

    unpacked = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    MusicnnBackend.fetch(source=unpacked / "musicnn")
    assert backend_status("musicnn").ready
    data = unpacked / "musicnn" / "MTT_musicnn" / ".data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsMissing, match=r"differs from the file in the musicnn 0\.1\.0 wheel"):
        MusicnnBackend.fetch(source=unpacked)


def test_a_wrong_wheel_is_refused(tmp_path):
    fake = tmp_path / WHEEL_FILENAME
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("musicnn/__init__.py", "")
    with pytest.raises(WeightsMissing, match=r"is not the musicnn 0\.1\.0 wheel"):
        MusicnnBackend.fetch(source=fake)
    assert not backend_status("musicnn").ready


def test_without_network_or_wheel_the_message_names_the_command_and_mfcc_stays_default(monkeypatch, capsys):
    # pip against an index nobody listens on: what an offline machine sees.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    for var in ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_EXTRA_INDEX_URL", "MRS_TUI_MUSICNN_WHEEL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["backends", "fetch", "musicnn"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "could not download musicnn==0.1.0" in error
    assert "pip download --no-deps musicnn==0.1.0 -d DIR" in error
    assert "mrs-tui backends fetch musicnn --from" in error
    assert default_backend_name() == "mfcc" and not backend_status("musicnn").ready

    assert main(["backends", "fetch", "musicnn", "--from", "/nonexistent/musicnn.whl"]) == 2
    assert "does not exist" in capsys.readouterr().err

    with pytest.raises(WeightsMissing, match="offline mode is on"):  # HF_HUB_OFFLINE=1 in the tests
        load_backend("musicnn")


def test_first_use_fetches_the_weights_through_pip(wheel, monkeypatch):
    # A local find-links folder stands in for PyPI; the code path is the real `pip download`.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    monkeypatch.delenv("MRS_TUI_MUSICNN_WHEEL", raising=False)
    backend = load_backend("musicnn")
    assert backend.loaded and backend_status("musicnn").ready
    assert not any((weights_dir("musicnn").parent.parent / "downloads").iterdir())  # the wheel is not kept


def test_embed_prints_vectors_frames_and_taggram(installed, capsys):
    reference = require_reference()
    clip = reference / "synthetic_white_noise.wav"
    assert main(["--json", "embed", str(clip), "--frames"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["backend"] == "musicnn" and entry["dim"] == 200
    frames = np.array(entry["frames"])
    assert frames.shape == (3, 200)
    np.testing.assert_allclose(entry["embedding"], frames.mean(axis=0), atol=1e-5)
    assert np.array(entry["taggram"]).shape == (3, 50) and entry["tag_names"] == list(MSD_LABELS)
    expected = np.load(reference / "synthetic_white_noise__MSD_musicnn.npz")
    np.testing.assert_allclose(entry["taggram"], expected["taggram"], atol=1e-4)
    assert entry["tags"][0][0] in MSD_LABELS

    assert main(["embed", str(clip), "--backend-option", "model=mtt"]) == 0
    text = capsys.readouterr().out
    assert "musicnn msd-1+model=mtt, dim 200" in text and "sounds like:" in text
    assert main(["embed", str(clip), "--backend", "mfcc", "--frames"]) == 0
    assert "mfcc has no per-frame output" in capsys.readouterr().out


def test_indexing_stores_tags_that_explain_suggestions(installed, library, tmp_path):
    from mrs_tui.engine import Engine
    from mrs_tui.store import Store

    root, made = library
    store = Store.open(tmp_path / "library.db")
    try:
        engine = Engine(store)
        assert engine.backend == "musicnn"
        engine.scan(root)
        report = engine.index()
        assert report.embedded["musicnn"] == sum(len(paths) for paths in made.values())
        tracks = store.tracks()
        tags = engine.track_tags(tracks[0].id)
        assert len(tags) == 10 and set(tags) <= set(MSD_LABELS)
        result = engine.suggest(seed=tracks[0].id, k=3)
        assert result.items and all("sounds like" in s.reason for s in result.items)
    finally:
        store.close()


def test_cpu_shards_give_the_single_pass_numbers_and_leave_the_callers_threads_alone(tmp_path):
    import torch

    write_random_checkpoint("musicnn", tmp_path, size="real")
    backend = MusicnnBackend().load(tmp_path)
    patches = np.random.default_rng(4).random((7, 187, 96), dtype=np.float32) * 3
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        sharded = backend.run_patches(patches)  # 3 shards of 3, 2, 2 patches, in passes of 2
        assert torch.get_num_threads() == 3  # the workers' one thread each is theirs only
        assert backend._pool_workers == 3
        torch.set_num_threads(1)
        whole = backend.run_patches(patches)  # one thread: no shards, the calling thread runs it
    finally:
        torch.set_num_threads(before)
    for name in ("penultimate", "logits", "mean_pool", "max_pool"):
        got, want = getattr(sharded, name), getattr(whole, name)
        assert got.shape == want.shape  # every patch once, in order
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
