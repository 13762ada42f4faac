"""Helpers shared by the backend tests: deterministic test clips and the backend contract.

Every backend test builds a tiny randomly initialised checkpoint in the upstream layout, loads
it through `load()`, and then calls `assert_backend_contract(backend, clips)`, which checks
what a user of `embed` relies on: one float32 row of `dim` values per clip, finite values,
the same answer twice, the same answer alone as in a batch, and different answers for
different audio.

Append new helpers at the end; other backend test modules import from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def make_clips(
    sample_rate: int,
    seconds: float = 2.0,
    *,
    count: int = 2,
    seed: int = 0,
    lengths: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """`count` musically different mono float32 clips, the same on every call with the same seed.

    Clip 0 is a low chord with a slow pulse, clip 1 a bright, fast arpeggio with noise hits,
    and later clips alternate between the two recipes with other pitches. `lengths` (seconds,
    one per clip) overrides `seconds` to get clips of unequal length.
    """
    rng = np.random.default_rng(seed)
    durations = list(lengths) if lengths is not None else [seconds] * count
    clips = []
    for index, duration in enumerate(durations):
        n = max(1, int(round(duration * sample_rate)))
        t = np.arange(n, dtype=np.float64) / sample_rate
        shift = 2 ** ((index // 2) * 3 / 12)  # later clips: a minor third up each pair
        if index % 2 == 0:
            freqs = np.array([110.0, 138.6, 164.8]) * shift
            tone = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
            envelope = 0.5 + 0.5 * np.cos(2 * np.pi * 2.0 * t) ** 2
            signal = 0.6 * tone * envelope
        else:
            notes = np.array([880.0, 1108.7, 1318.5, 1760.0]) * shift
            step = np.minimum((t * 8).astype(int) % len(notes), len(notes) - 1)
            signal = 0.4 * np.sign(np.sin(2 * np.pi * notes[step] * t)) * np.exp(-((t * 8) % 1.0) * 4)
            hits = (((t * 4) % 1.0) < 0.02).astype(np.float64)
            signal = signal + 0.3 * hits * rng.standard_normal(n)
        signal = signal + 0.01 * rng.standard_normal(n)
        clips.append(np.clip(signal, -1.0, 1.0).astype(np.float32))
    return clips


def assert_backend_contract(
    backend,
    clips: Sequence[np.ndarray],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    min_distance: float = 1e-4,
    repeat_atol: float = 0.0,
) -> np.ndarray:
    """Check the `embed` contract on a loaded backend; returns the batch embedding.

    `clips` must hold at least two different waveforms at `backend.sample_rate`. The
    tolerances cover float reordering between batched and single runs on CPU; `min_distance`
    is the smallest relative distance two different clips' vectors may have; `repeat_atol` is
    how far two identical calls may differ (0: bit-identical, right for CPU inference).
    """
    assert len(clips) >= 2, "the contract needs at least two clips"
    assert backend.loaded, "load() must set loaded = True"
    batch = backend.embed(list(clips))

    assert isinstance(batch, np.ndarray), f"embed returned {type(batch).__name__}, not a numpy array"
    assert batch.shape == (len(clips), backend.dim), f"shape {batch.shape}, expected {(len(clips), backend.dim)}"
    assert batch.dtype == np.float32, f"dtype {batch.dtype}, expected float32"
    assert np.isfinite(batch).all(), "embedding has NaN or inf values"
    assert np.abs(batch).max() > 0, "embedding is all zeros"

    again = backend.embed(list(clips))
    np.testing.assert_allclose(again, batch, rtol=0, atol=repeat_atol, err_msg="embed is not deterministic")

    for index, clip in enumerate(clips):
        single = backend.embed([clip])
        assert single.shape == (1, backend.dim)
        np.testing.assert_allclose(
            single[0], batch[index], rtol=rtol, atol=atol, err_msg=f"clip {index}: batched and single results differ"
        )

    for i in range(len(clips)):
        for j in range(i + 1, len(clips)):
            if np.array_equal(clips[i], clips[j]):
                continue
            scale = max(np.linalg.norm(batch[i]), np.linalg.norm(batch[j]), 1e-12)
            distance = np.linalg.norm(batch[i] - batch[j]) / scale
            assert distance > min_distance, f"clips {i} and {j} give the same vector (relative distance {distance:.2e})"
    return batch


def conformer_reference_frames(
    wave: np.ndarray,
    tensors: dict,
    *,
    mel_mean: float,
    mel_std: float,
    num_heads: int,
    time_strides: tuple[int, int] = (2, 2),
) -> np.ndarray:
    """MusicFM / MuQ encoder output for one 24-kHz clip, computed without the backend's modules.

    An independent path for the conformer-family tests: librosa's HTK mel (torchaudio's
    defaults: centred reflect-padded STFT, power 2, no filter normalisation) in dB with the
    last frame dropped, the residual conv front end written with functional ops from the
    checkpoint's tensors, and transformers' own ``Wav2Vec2ConformerEncoder`` (eager attention)
    loaded with the ``conformer.*`` tensors. `tensors` are named as inside MusicFM25Hz / MuQModel
    ("conv.conv.0.conv1.weight", "conformer.layers.0...."). Returns (frames, hidden) float32.
    """
    import librosa
    import torch
    import torch.nn.functional as F
    from transformers import Wav2Vec2ConformerConfig
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

    t = {k: v.float() for k, v in tensors.items()}
    channels = t["conv.conv.0.conv1.weight"].shape[0]
    n_mels = 4 * t["conv.linear.weight"].shape[1] // channels
    power = librosa.feature.melspectrogram(
        y=np.asarray(wave, np.float64),
        sr=24000,
        n_fft=2048,
        hop_length=240,
        n_mels=n_mels,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
        power=2.0,
    )
    decibels = 10.0 * np.log10(np.maximum(power, 1e-10))[:, :-1]
    x = torch.tensor((decibels - mel_mean) / mel_std, dtype=torch.float32)[None, None]

    def batch_norm(y, name):
        return F.batch_norm(
            y,
            t[name + ".running_mean"],
            t[name + ".running_var"],
            t[name + ".weight"],
            t[name + ".bias"],
            training=False,
            eps=1e-5,
        )

    def residual_block(y, prefix, stride):
        out = F.relu(
            batch_norm(F.conv2d(y, t[prefix + "conv1.weight"], t[prefix + "conv1.bias"], stride, 1), prefix + "bn1")
        )
        out = batch_norm(F.conv2d(out, t[prefix + "conv2.weight"], t[prefix + "conv2.bias"], 1, 1), prefix + "bn2")
        skip = batch_norm(F.conv2d(y, t[prefix + "conv3.weight"], t[prefix + "conv3.bias"], stride, 1), prefix + "bn3")
        return F.relu(skip + out)

    x = residual_block(x, "conv.conv.0.", (2, time_strides[0]))
    x = residual_block(x, "conv.conv.1.", (2, time_strides[1]))
    batch, chans, bands, frames = x.shape
    x = torch.einsum("bcft->btcf", x).reshape(batch, frames, chans * bands)
    x = F.linear(x, t["conv.linear.weight"], t["conv.linear.bias"])

    depth = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("conformer.layers."))
    config = Wav2Vec2ConformerConfig(
        hidden_size=t["conformer.layer_norm.weight"].shape[0],
        num_hidden_layers=depth,
        num_attention_heads=num_heads,
        intermediate_size=t["conformer.layers.0.ffn1.intermediate_dense.weight"].shape[0],
        hidden_act="swish",
        position_embeddings_type="rotary",
        rotary_embedding_base=10000,
        conv_depthwise_kernel_size=t["conformer.layers.0.conv_module.depthwise_conv.weight"].shape[-1],
        layer_norm_eps=1e-5,
        attn_implementation="eager",
    )
    encoder = Wav2Vec2ConformerEncoder(config).eval()
    conformer = {
        k[len("conformer.") :]: v for k, v in t.items() if k.startswith("conformer.") and ".pos_conv_embed." not in k
    }
    missing, unexpected = encoder.load_state_dict(conformer, strict=False)
    assert not unexpected and all(k.startswith("pos_conv_embed.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        return encoder(x).last_hidden_state[0].numpy()


def fake_hub_cache(root: Path, repo_id: str, files: Mapping[str, Path]) -> Path:
    """A Hugging Face hub cache under `root` holding `files` of `repo_id`, as a past download leaves it.

    Point `huggingface_hub.constants.HF_HUB_CACHE` at the returned folder (monkeypatch) and a
    backend's `fetch()` in offline mode finds the files there, through the real download code.
    """
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(root) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(Path(source).read_bytes())
    return Path(root)


import pytest  # noqa: E402 - appended helper section (the module is append-only)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread, restoring the setting afterwards.

    On a busy 2-core machine two torch threads contend with other processes and spin: the
    same test ran 7 times slower in wall time. Import it into a test module and use it
    (or `pytestmark = pytest.mark.usefixtures("one_torch_thread")`).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
