"""The conformer family shared by MusicFM, MuQ and MuQ-MuLan: mel front end, conv subsampling, encoder.

MusicFM (Won et al. 2024) and MuQ (Zhu et al. 2025) share one audio encoder: a 128-band mel
spectrogram in dB (n_fft 2048, hop 240 at 24 kHz), normalised with one global mean and
standard deviation, two residual 2-D conv blocks that quarter the time and frequency axes
(100 Hz frames -> 25 Hz tokens), a linear projection and the conformer encoder of
transformers' ``Wav2Vec2ConformerEncoder`` with rotary positions. MuQ-MuLan's audio tower
puts a MuQ encoder in front of its own transformer.

Design decisions, and where upstream and this code part ways:

- Upstream builds the mel with torchaudio, which does not load next to our torch. This
  module computes the same thing with ``torch.stft`` (centred, reflect padding, periodic
  Hann window) and an HTK mel filterbank without area normalisation, power 2, then
  ``10 * log10(max(x, 1e-10))`` with no top-dB clipping — torchaudio's ``MelSpectrogram``
  and ``AmplitudeToDB`` defaults. The last frame is dropped, as upstream does. Checked
  against torchaudio 2.11 on a machine that has it: at most 1.2e-4 dB apart (filterbank
  1.2e-5). The mel is always computed in float32, outside any autocast: a loud track's power
  overflows float16.
- On CUDA the conv front end and the encoder run under float16 autocast, 8 tracks a batch. At
  real size (random weights, 30-s clips, H100) the vectors agree with float32 CPU ones to
  cosine 0.9999998 on music-like input and 0.99996 on a full-scale pure tone, the worst seen;
  about 7 ms per clip at batch 8.
- The parameter names of the conv front end and the encoder are upstream's (``conv.conv.0.
  conv1.weight``, ``conformer.layers.3.self_attn.linear_q.weight``...), so real checkpoints
  load into these modules with nothing renamed.
- transformers 5 removed ``hidden_states`` from the encoder's output. Upstream asks for
  hidden state ``12`` (MusicFM) or ``-1`` (MuQ, MuLan); under transformers 4 semantics the
  tuple holds the input of each layer followed by the final-LayerNorm output, so both mean
  ``last_hidden_state`` for the real 12-layer models. `ConformerEncoderStack.encode` keeps
  those semantics for any index, running the encoder's own layers and stopping early.
- The encoder gets an explicit ``Wav2Vec2ConformerConfig`` with ``attn_implementation=
  "sdpa"`` (a bare encoder has no attention implementation set otherwise); eager and SDPA
  differ by ~5e-7.
- The conformer's rotary variant never uses ``pos_conv_embed``, and ``embed_positions.
  inv_freq`` is a function of the config; checkpoint tensors for either are accepted and
  ignored, whatever weight-norm naming the transformers version that saved them used.
- Batching: the conv front end and the depthwise convolutions of the conformer see across
  any padding, so padded batches would not equal single runs. Clips are grouped by length
  and each group runs as one batch; equal-length 30-s excerpts, the common case, batch fully.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from backends._mel import mel_filterbank
from backends._precision import compute_context, max_batch_for, precision_option, prepare_model
from backends._weights import pick_device
from backends.base import BackendError, MeanPooledBackend

if TYPE_CHECKING:
    from transformers import Wav2Vec2ConformerConfig

SAMPLE_RATE = 24000
N_FFT = 2048
HOP_LENGTH = 240
GPU_BATCH_SIZE = 8

# facebook/wav2vec2-conformer-rope-large-960h-ft, the config MusicFM's constructor fetches from
# the hub at run time; MuQ's config.json carries a dump of the same values. Only what the
# encoder reads at inference matters here.
ROPE_LARGE_CONFORMER: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 12,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "swish",
    "position_embeddings_type": "rotary",
    "rotary_embedding_base": 10000,
    "conv_depthwise_kernel_size": 31,
    "layer_norm_eps": 1e-5,
    "max_source_positions": 5000,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}

# Config keys that describe the file, not the architecture; transformers 5 rejects some of them.
_CONFIG_META_KEYS = {
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "attn_implementation",
    "auto_map",
    "id2label",
    "label2id",
    "gradient_checkpointing",
}


class MelSpectrogramDb(nn.Module):
    """Waveforms (B, L) -> power mel spectrogram in dB, (B, n_mels, L // hop), always in float32.

    Buffers are not persistent: they are a function of the settings, and upstream checkpoints
    differ in whether (and under which names) they stored torchaudio's copies.
    """

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = 128
    ):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        # (freqs, mels) HTK filters without area normalisation: torchaudio's melscale_fbanks defaults.
        filters = mel_filterbank(sample_rate, n_fft, n_mels, htk=True, norm=None).T.copy()
        self.register_buffer("filterbank", torch.from_numpy(filters), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # Power of a full-scale tone reaches ~2.6e5, beyond float16: autocast must not touch this.
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            spectrum = torch.stft(
                waveforms.float(),
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = spectrum.abs().pow(2.0)
            mel = torch.matmul(power.transpose(-1, -2), self.filterbank).transpose(-1, -2)
            decibels = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return decibels[..., :-1]


class Res2dModule(nn.Module):
    """Residual block of two 3x3 convs with batch norm; a strided conv on the skip path."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.has_projection = in_channels != out_channels or stride[0] > 1
        if self.has_projection:
            self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        skip = self.bn3(self.conv3(x)) if self.has_projection else x
        return self.relu(skip + out)


class Conv2dSubsampling(nn.Module):
    """Mel (B, F, T) -> tokens (B, T / 4, out_dim): two residual blocks, then a projection."""

    def __init__(self, channels: int, out_dim: int, n_mels: int, time_strides: Sequence[int] = (2, 2)):
        super().__init__()
        self.conv = nn.Sequential(
            Res2dModule(1, channels, (2, time_strides[0])),
            Res2dModule(channels, channels, (2, time_strides[1])),
        )
        self.linear = nn.Linear(channels * (n_mels // 4), out_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel.unsqueeze(1))  # (B, C, F', T')
        batch, channels, bands, frames = x.shape
        # Feature order (channel-major, then band) matches upstream's "b c f t -> b t (c f)".
        x = x.permute(0, 3, 1, 2).reshape(batch, frames, channels * bands)
        return self.linear(x)


def conformer_config(values: Mapping[str, Any] | None = None, **overrides: Any) -> Wav2Vec2ConformerConfig:
    """A Wav2Vec2ConformerConfig: rope-large defaults, then `values` (e.g. MuQ's w2v2_config), then overrides."""
    from transformers import Wav2Vec2ConformerConfig

    merged = dict(ROPE_LARGE_CONFORMER)
    merged.update({k: v for k, v in (values or {}).items() if k not in _CONFIG_META_KEYS})
    merged.update(overrides)
    if merged.get("position_embeddings_type") not in ("rotary", "relative", None):
        raise BackendError(f"unsupported conformer position embeddings {merged['position_embeddings_type']!r}")
    try:
        return Wav2Vec2ConformerConfig(**merged, attn_implementation="sdpa")
    except Exception as exc:
        raise BackendError(
            f"invalid conformer settings ({type(exc).__name__}: {str(exc)[:160]})",
            "the config.json may be damaged: fetch the weights again",
        ) from exc


class ConformerEncoderStack(nn.Module):
    """Inference part of MusicFM25Hz / MuQModel: mel, normalisation, conv subsampling, conformer.

    Attribute names (`conv`, `conformer`) are upstream's, so `state_dict()` keys equal the
    checkpoint's once its prefix ("model.") is removed. Training heads are not built.
    """

    def __init__(
        self,
        config: Wav2Vec2ConformerConfig,
        *,
        mel_mean: float,
        mel_std: float,
        n_mels: int = 128,
        conv_channels: int = 512,
        time_strides: Sequence[int] = (2, 2),
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
    ):
        from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

        super().__init__()
        if not mel_std or not math.isfinite(mel_std) or not math.isfinite(mel_mean):
            raise BackendError(f"invalid mel statistics (mean {mel_mean}, std {mel_std})", "fetch the weights again")
        self.mel_mean = float(mel_mean)
        self.mel_std = float(mel_std)
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.mel = MelSpectrogramDb(sample_rate, n_fft, hop_length, n_mels)
        self.conv = Conv2dSubsampling(conv_channels, config.hidden_size, n_mels, time_strides)
        self.conformer = Wav2Vec2ConformerEncoder(config)

    @property
    def hidden_size(self) -> int:
        return self.conformer.config.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.conformer.layers)

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Normalised mel, (B, n_mels, frames), float32 whatever the model's dtype."""
        return (self.mel(waveforms) - self.mel_mean) / self.mel_std

    def encode(self, waveforms: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Hidden state `layer` (transformers 4 numbering: 0 = input, num_layers or -1 = final output)."""
        tokens = self.conv(self.features(waveforms))
        return self.hidden_state(tokens, layer)

    def hidden_state(self, tokens: torch.Tensor, layer: int = -1) -> torch.Tensor:
        depth = self.num_layers
        index = layer + depth + 1 if layer < 0 else layer
        if not 0 <= index <= depth:
            raise BackendError(f"layer {layer} does not exist in a {depth}-layer encoder")
        if index == depth:
            return self.conformer(tokens).last_hidden_state
        # Intermediate states: the input of layer `index`, as transformers 4 returned them.
        encoder = self.conformer
        hidden = encoder.dropout(tokens)
        positions = encoder.embed_positions(hidden) if encoder.embed_positions is not None else None
        for block in encoder.layers[:index]:
            hidden = block(hidden, attention_mask=None, relative_position_embeddings=positions)
        return hidden


def optional_encoder_keys(key: str) -> bool:
    """Tensors a checkpoint may or may not hold, none of which change the encoder's output."""
    return (
        "conformer.pos_conv_embed." in key
        or key.endswith("conformer.embed_positions.inv_freq")
        or key.endswith(".num_batches_tracked")
    )


def load_matching(
    module: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    *,
    file: Path,
    what: str,
    ignored: Callable[[str], bool] = lambda key: False,
    optional: Callable[[str], bool] = optional_encoder_keys,
    fix: str = "",
) -> None:
    """Load `tensors` (names already relative to `module`) strictly; a wrong file is a one-line error.

    Every tensor `module` needs must be present with the right shape; tensors that `ignored`
    accepts (training heads, another tower) are skipped; anything else means the file is not
    what it claims to be, and nothing is half-loaded.
    """
    own = module.state_dict()
    needed = {k for k in own if not optional(k)}
    present = {k for k in tensors if not ignored(k)}
    missing = sorted(needed - set(tensors))
    unexpected = sorted(k for k in present - set(own) if not optional(k))
    fix = fix or "check that the folder holds this backend's weights, or fetch them again"
    if missing:
        share = f"{len(missing)} of {len(needed)}"
        raise BackendError(f"{file} is not a {what} checkpoint ({share} tensors missing, e.g. {missing[0]})", fix)
    if unexpected:
        raise BackendError(
            f"{file} does not match the {what} architecture ({len(unexpected)} unknown tensors, e.g. {unexpected[0]})",
            fix,
        )
    for key in sorted(needed):
        if tuple(tensors[key].shape) != tuple(own[key].shape):
            raise BackendError(
                f"{file}: tensor {key} has shape {tuple(tensors[key].shape)}, the {what} config says "
                f"{tuple(own[key].shape)}",
                "the weights and config.json do not belong together: fetch both again",
            )
    # inv_freq is a function of the config: keep ours so a dtype or rounding difference cannot creep in.
    usable = {
        k: v for k, v in tensors.items() if k in own and not ignored(k) and not k.endswith("embed_positions.inv_freq")
    }
    module.load_state_dict(usable, strict=False)


def encoder_shape_from_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Architecture sizes read off conv/conformer tensors (MusicFM ships no config file)."""
    first_conv = tensors["conv.conv.0.conv1.weight"]
    projection = tensors["conv.linear.weight"]
    final_norm = tensors["conformer.layer_norm.weight"]
    ffn = tensors["conformer.layers.0.ffn1.intermediate_dense.weight"]
    depthwise = tensors["conformer.layers.0.conv_module.depthwise_conv.weight"]
    channels = int(first_conv.shape[0])
    depth = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("conformer.layers."))
    return {
        "conv_channels": channels,
        "n_mels": 4 * int(projection.shape[1]) // channels,
        "hidden_size": int(final_norm.shape[0]),
        "num_hidden_layers": depth,
        "intermediate_size": int(ffn.shape[0]),
        "conv_depthwise_kernel_size": int(depthwise.shape[-1]),
    }


def strip_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def pad_waveforms(waveforms: Sequence[np.ndarray], *, min_samples: int, pad_to: int | None = None) -> list[np.ndarray]:
    """Mono float32 copies, zero-padded to `min_samples` (the STFT's reflect padding needs it) or `pad_to`."""
    out = []
    for index, wave in enumerate(waveforms):
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise BackendError(f"waveform {index} has shape {wave.shape}; expected mono (samples,)")
        target = max(min_samples, pad_to or 0)
        if len(wave) < target:
            wave = np.pad(wave, (0, target - len(wave)))
        out.append(wave)
    return out


def run_grouped_by_length(
    waveforms: Sequence[np.ndarray],
    run: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    max_batch: int,
    precision: str = "fp32",
) -> list[torch.Tensor]:
    """`run` on batches of equal-length waveforms; results (on CPU, float32) back in input order."""
    by_length: dict[int, list[int]] = {}
    for index, wave in enumerate(waveforms):
        by_length.setdefault(len(wave), []).append(index)
    results: list[torch.Tensor | None] = [None] * len(waveforms)
    for indices in by_length.values():
        for start in range(0, len(indices), max_batch):
            chunk = indices[start : start + max_batch]
            batch = torch.from_numpy(np.stack([waveforms[i] for i in chunk])).to(device)
            with compute_context(precision, device.type):
                out = run(batch)
            for position, index in enumerate(chunk):
                results[index] = out[position].float().cpu()
    return results  # type: ignore[return-value]


def autocast_for(device: torch.device):
    """fp16 autocast on CUDA (matmuls and convs; norms and the mel stay float32), nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def read_json(path: Path, what: str) -> dict:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"{path}: not a readable {what} ({type(exc).__name__})", "fetch the weights again") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path}: not a {what} (expected a JSON object)", "fetch the weights again")
    return data


def mel_stats(stats: Mapping[str, Any], path: Path, feature: str = "melspec_2048") -> tuple[float, float]:
    """(mean, std) of the normalisation statistics, or a one-line error naming the file."""
    try:
        mean = float(stats[f"{feature}_mean"])
        std = float(stats[f"{feature}_std"])
    except (KeyError, TypeError, ValueError):
        raise BackendError(
            f"{path} has no usable {feature}_mean / {feature}_std statistics", "fetch the weights again"
        ) from None
    return mean, std


class ConformerFamilyBackend(MeanPooledBackend):
    """embed / analyze_frames shared by MusicFM and MuQ: encode, pick a hidden state, mean over time.

    Subclasses set `self.model` (a `ConformerEncoderStack`), `self.layer` and `self.torch_device`
    in `load`. `dim` is the loaded model's width, so tiny test models report theirs.
    """

    batch_size: ClassVar[int | None] = 2
    layer: int = -1

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.model: ConformerEncoderStack | None = None
        self.torch_device: torch.device | None = None
        self.precision = precision_option(self.options)

    @property
    def dim(self) -> int:
        return self.model.hidden_size if self.model is not None else self.spec.dim

    def _use_device(self) -> None:
        self.torch_device = pick_device(self.device)
        self.model.to(self.torch_device).eval()
        self.model = prepare_model(self.model, self.precision, self.torch_device.type)
        if self.torch_device.type == "cuda":
            self.batch_size = GPU_BATCH_SIZE  # 30-s clips at batch 8 take ~4 GB in float16

    def _prepared(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        # The paper's reader zero-padded every track to 30 s before the model saw it.
        pad_to = int(self.spec.clip_seconds * self.sample_rate) if self.paper_compat else None
        return pad_waveforms(waveforms, min_samples=N_FFT, pad_to=pad_to)

    def frame_sets(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per-waveform (T, dim) float32 hidden states of the chosen layer."""
        self._require_loaded()
        model = self.model
        with torch.inference_mode():
            return run_grouped_by_length(
                self._prepared(waveforms),
                lambda batch: model.encode(batch, self.layer),
                device=self.torch_device,
                max_batch=max_batch_for(self.precision, self.batch_size or 2),
                precision=self.precision,
            )
