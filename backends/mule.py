"""MULE (McCallum et al., ISMIR 2022): Pandora's SF-NFNet-F0 music embedding, ported to PyTorch.

Upstream is TensorFlow/Keras code under GPL-3.0 (`PandoraMedia/music-audio-representations`,
PyPI `sxmp-mule`) with CC-BY-NC-4.0 weights in ``supporting_data/model/model.keras``.
TensorFlow is not an option at run time, so this module is our own torch implementation of
the architecture (written from the published description and the model's structure, not
copied from either GPL code base).

Weights. What a user can actually download without TensorFlow is the converted checkpoint
on the Hugging Face hub, ``matteospanio/mule`` (``model.safetensors`` + ``config.json``, made
from ``model.keras`` by the GPL `mule-torch` project, whose author reports cosine 0.9999999
against the TensorFlow pipeline). We read that file directly, by its tensor names
(``backbone.slow_stem.convs.0.weight``, ``backbone.slow_stages.2.blocks.3.se.fc1.weight``,
...), and never import `mule-torch`. Reading ``model.keras`` itself (an HDF5 file inside a
zip) would need h5py and Keras' auto-generated layer names, which cannot be checked against
the real file from here; a user who has only ``model.keras`` can convert it once with
mule-torch's script and hand us the folder.

Pipeline (``mule_embedding_average.yml``):

1. 16 kHz mono; mel spectrogram with n_fft 2048, window 400 (periodic Hann, centred), hop
   160, reflect padding, power 2, 96 HTK mel bands 0-8 kHz with each filter scaled to unit
   L2 norm (librosa ``norm=2.0``), then ``log10(10000 x + 1)``.
2. 300-frame (3 s) slices centred every 200 frames (2 s): centres 200, 400, ... below the
   frame count, clamped so each slice lies inside; each slice standardised (mean 0, std 1,
   std floored at 0.01).
3. SF-NFNet-F0 per slice: a slow path (few time steps, many channels) and a fast path (the
   reverse) of weight-standardised convolutions with TF "same" padding, NFNet bottleneck
   blocks with squeeze-excite and learned skip gains, and fast-to-slow fusions; global
   average of both paths, concatenated (1536 + 192) and passed through the scaled GELU.
4. Timeline average over slices -> 1728.

Where upstream's behaviour is odd, and what we do:

- Amplitude: upstream's reader divides 16-bit PCM by 2^16 and *sums* the channels. For a
  stereo file that equals the usual mean of channels in [-1, 1], which is what our decoder
  hands us, so we feed the waveform unscaled; for a mono file upstream's input is half as
  loud (the log compression makes that a small, not a zero, difference).
- Tracks shorter than one 3-s slice crash upstream (no slice centre, or a negative start);
  we loop the audio to 3 s first.
- The paper analysed whole Music4All files, which are 30-s previews; we take the same 30 s
  (``clip_seconds``) of longer tracks.
- A ``frontend.mel_fb`` tensor in the checkpoint must equal the filterbank we compute; any
  other ``frontend.*`` tensor (precomputed DFT bases) is ignored. Missing or unexpected
  ``backbone.*`` tensors mean the file is not MULE and loading stops.
- GPU: float32. The network has no normalisation layers, so activations are only as tame as
  the trained scalars keep them; half precision is not worth that risk at 62 M parameters.

Checked: the front end against librosa; the per-slice embeddings against `mule-torch` 0.2.0
loading the same random checkpoint through its own loader (tiny and real size; largest
difference 4e-6 at real size; that test runs only where mule-torch is installed). Not
checked (no hub access): the real ``matteospanio/mule`` file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends import REGISTRY
from backends._mel import mel_filterbank
from backends._weights import load_state_dict, pick_device, resolve_weights
from backends.base import BackendError, MeanPooledBackend

HUB_REPO = "matteospanio/mule"
HUB_FILES = ("config.json", "model.safetensors")

SAMPLE_RATE = 16000
N_FFT = 2048
WIN_LENGTH = 400
HOP = 160
N_MELS = 96
F_MAX = 8000.0
SLICE_BACK = 150
SLICE_FORWARD = 150
SLICE_WIDTH = SLICE_BACK + SLICE_FORWARD
SLICE_HOP = 200
STD_FLOOR = 0.01
# The shortest input that yields one full 300-frame slice (frames = 1 + samples // hop).
MIN_SAMPLES = (SLICE_WIDTH - 1) * HOP
# Slices pushed through the network at once (CPU peak memory about 1.2 GB at real size).
SLICES_PER_BATCH = 16
SLICES_PER_BATCH_GPU = 64

# Variance-preserving activation gains of the NFNet reference code (baked into the weights).
GELU_GAIN = 1.7015043497085571
RELU_GAIN = 1.7139588594436646
WS_EPS = 1e-4
ALPHA = 0.2
STAGE_DEPTHS = (1, 2, 6, 3)
STAGE_FREQ_DOWNSAMPLE = (1, 2, 2, 2)
BLOCK_KERNELS = ((1, 1), (1, 3), (3, 1), (1, 1))
SLOW_STEM = (((3, 1), (2, 8)), ((3, 1), (1, 1)), ((3, 1), (1, 1)), ((3, 3), (2, 2)))  # (kernel, stride)
FAST_STEM = (((3, 3), (2, 2)), ((3, 3), (1, 1)), ((3, 3), (1, 1)), ((3, 3), (2, 2)))
FUSION_KERNEL, FUSION_STRIDE = (1, 7), (1, 4)

# Front-end settings a MULE config.json must carry (mule-torch's field names).
FRONTEND = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": N_FFT,
    "hop_length": HOP,
    "win_length": WIN_LENGTH,
    "n_mels": N_MELS,
    "fmin": 0.0,
    "fmax": F_MAX,
    "mel_norm": 2.0,
    "htk": True,
    "power": 2.0,
    "slice_hop": SLICE_HOP,
    "look_backward": SLICE_BACK,
    "look_forward": SLICE_FORWARD,
}


@dataclass(frozen=True)
class MuleArchitecture:
    """Channel widths; the published model by default. Field names are the ones in the
    checkpoint's config.json."""

    slow_stem_channels: tuple[int, ...] = (16, 32, 64, 128)
    fast_stem_channels: tuple[int, ...] = (2, 4, 8, 16)
    slow_stage_out: tuple[int, ...] = (256, 512, 1536, 1536)
    fast_stage_out: tuple[int, ...] = (32, 64, 192, 192)
    slow_group_size: int = 128
    fast_group_size: int = 16
    fusion_input_channels: tuple[int, ...] = (32, 32, 64, 192)
    fusion_output_channels: tuple[int, ...] = (128, 256, 512, 3072)
    weight_standardization: bool = True  # False: kernels stored already standardised

    @property
    def fast_stage_in(self) -> tuple[int, ...]:
        return (self.fast_stem_channels[-1], *self.fast_stage_out[:-1])

    @property
    def slow_stage_in(self) -> tuple[int, ...]:
        # Each fusion concatenates its expansion onto the slow path (4608 = 1536 + 3072 at the
        # last stage, not the 2560 a comment upstream mentions).
        previous = (self.slow_stem_channels[-1], *self.slow_stage_out[:-1])
        return tuple(p + f for p, f in zip(previous, self.fusion_output_channels, strict=True))

    @property
    def dim(self) -> int:
        return self.slow_stage_out[-1] + self.fast_stage_out[-1]

    def to_config(self) -> dict:
        """config.json content in the hub checkpoint's vocabulary."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out.update(
            embedding_dim=self.dim,
            slow_stage_in=list(self.slow_stage_in),
            fast_stage_in=list(self.fast_stage_in),
            alpha=ALPHA,
            scaled_activation="gelu",
            ws_eps=WS_EPS,
            window="hann",
            center=True,
            pad_mode="reflect",
            mag_compression="log10_nonneg",
            standard_normalize=True,
            std_floor=STD_FLOOR,
            **FRONTEND,
        )
        return out

    @classmethod
    def from_config(cls, config: dict, source: Path) -> MuleArchitecture:
        def fail(problem: str) -> BackendError:
            return BackendError(f"{source}: {problem}", "fetch the MULE weights again: mrs-tui backends fetch mule")

        for key, value in FRONTEND.items():
            if key in config and config[key] != value:
                raise fail(f"{key}={config[key]!r}, but MULE uses {value!r}: not a MULE config")
        if config.get("scaled_activation", "gelu") != "gelu" or float(config.get("alpha", ALPHA)) != ALPHA:
            raise fail("activation or alpha differ from MULE's: not a MULE config")
        values = {}
        for field in fields(cls):
            if field.name not in config:
                raise fail(f"config.json has no {field.name!r}: not a MULE config")
            value = config[field.name]
            values[field.name] = tuple(value) if isinstance(value, list) else value
        for field in fields(cls):
            value = values[field.name]
            if isinstance(value, tuple) and (len(value) != 4 or not all(isinstance(v, int) and v > 0 for v in value)):
                raise fail(f"{field.name}={list(value)} is not four positive widths: not a MULE config")
        arch = cls(**values)
        for name, derived in (("slow_stage_in", arch.slow_stage_in), ("fast_stage_in", arch.fast_stage_in)):
            if name in config and tuple(config[name]) != derived:
                raise fail(f"{name} {config[name]} does not fit the other widths")
        if "embedding_dim" in config and config["embedding_dim"] != arch.dim:
            raise fail(f"embedding_dim {config['embedding_dim']} != {arch.dim}")
        return arch


# --- front end -------------------------------------------------------------------------------


class MuleFrontEnd(nn.Module):
    """(B, samples) at 16 kHz -> (B, 96, frames) log-compressed mel."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN_LENGTH, periodic=True), persistent=False)
        # HTK mels over 0-8 kHz, each filter scaled to unit L2 norm (librosa's norm=2.0).
        filters = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, f_max=F_MAX, htk=True, norm=2.0)
        self.register_buffer("mel_fb", torch.from_numpy(filters), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave,
            N_FFT,
            hop_length=HOP,
            win_length=WIN_LENGTH,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return torch.log10(10000.0 * (self.mel_fb @ power) + 1.0)


def slice_centres(frames: int) -> list[int]:
    centres = [t for t in range(0, frames, SLICE_HOP) if t > 0]
    return [min(max(c, SLICE_BACK), frames - SLICE_FORWARD) for c in centres]


def standardise(slices: torch.Tensor) -> torch.Tensor:
    centred = slices - slices.mean(dim=(-2, -1), keepdim=True)
    std = centred.square().mean(dim=(-2, -1), keepdim=True).sqrt()
    std = torch.nan_to_num(std, nan=1.0, posinf=1.0, neginf=1.0).clamp_min(STD_FLOOR)
    return centred / std


# --- SF-NFNet-F0 -----------------------------------------------------------------------------


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow "same": output ceil(size / stride), the odd pixel of padding goes after.
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _WSConv2d(nn.Module):
    """Weight-standardised Conv2D + bias, TF 'same' padding (the upstream WeightStandardization
    wrapper): kernel = (v - mean) * gain / sqrt(max(fan_in * var, 1e-4)), per output channel."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride=(1, 1), groups: int = 1, ws=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, *kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = nn.Parameter(torch.ones(cout)) if ws else None
        nn.init.normal_(self.weight)
        self.kernel, self.stride, self.groups = kernel, stride, groups

    def standardised_weight(self) -> torch.Tensor:
        if self.gain is None:
            return self.weight
        v = self.weight
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        var = v.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        scale = torch.rsqrt(torch.clamp(var * v[0].numel(), min=WS_EPS)) * self.gain.view(-1, 1, 1, 1)
        return (v - mean) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_padding(x.shape[-2], self.kernel[0], self.stride[0])
        left, right = _same_padding(x.shape[-1], self.kernel[1], self.stride[1])
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.standardised_weight(), self.bias, self.stride, groups=self.groups)


def _scaled_gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x) * GELU_GAIN  # TF's gelu is the exact (erf) form


def _freq_avg_pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    # TF AveragePooling2D, padding "same": the mean over the real (unpadded) rows only.
    top, bottom = _same_padding(x.shape[-2], factor, factor)
    if not (top or bottom):
        return F.avg_pool2d(x, (factor, 1), (factor, 1))
    padded = F.pad(x, (0, 0, top, bottom))
    ones = F.pad(torch.ones_like(x[:, :1]), (0, 0, top, bottom))
    return F.avg_pool2d(padded, (factor, 1), (factor, 1)) / F.avg_pool2d(ones, (factor, 1), (factor, 1))


class _Stem(nn.Module):
    def __init__(self, channels: Sequence[int], layout, ws: bool):
        super().__init__()
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            _WSConv2d(cin, cout, kernel, stride, ws=ws)
            for cin, cout, (kernel, stride) in zip(widths[:-1], widths[1:], layout, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index < len(self.convs) - 1:
                x = _scaled_gelu(x)
        return x


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * (2.0 * gate)[:, :, None, None]


class _NFBlock(nn.Module):
    def __init__(self, cin: int, cout: int, freq_down: int, group_size: int, beta: float, transition: bool, ws: bool):
        super().__init__()
        mid = cout // 2
        groups = mid // group_size
        if groups < 1 or mid % group_size:
            raise BackendError(f"MULE block width {cout} does not fit group size {group_size}", "check config.json")
        self.transition, self.beta, self.freq_down = transition, beta, freq_down
        strides = ((1, 1), (freq_down, 1), (1, 1), (1, 1))
        self.convs = nn.ModuleList(
            _WSConv2d(a, b, k, s, groups=g, ws=ws)
            for a, b, k, s, g in zip(
                (cin, mid, mid, mid), (mid, mid, mid, cout), BLOCK_KERNELS, strides, (1, groups, groups, 1), strict=True
            )
        )
        self.se = _SqueezeExcite(cout)
        self.skip_gain = nn.Parameter(torch.zeros(1))  # upstream's learnable ScalarMultiply(0.0)
        self.skip_conv = _WSConv2d(cin, cout, (1, 1), ws=ws) if transition else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.beta * _scaled_gelu(x)
        skip = pre if self.transition else x
        out = pre
        for index, conv in enumerate(self.convs):
            out = conv(out)
            if index < 3:
                out = _scaled_gelu(out)
        out = self.se(out) * self.skip_gain * ALPHA
        if self.freq_down > 1:
            skip = _freq_avg_pool(skip, self.freq_down)
        if self.skip_conv is not None:
            skip = self.skip_conv(skip)
        return skip + out


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, freq_down: int, group_size: int, expected_var: float, ws):
        super().__init__()
        # Signal-propagation constants of the NFNet recipe: the first block divides by the
        # stage's expected input std, later ones by a running std that grows by alpha^2 per block.
        betas = [1.0 / expected_var]
        running = (expected_var**2 + ALPHA**2) ** 0.5
        for _ in range(1, depth):
            betas.append(1.0 / running)
            running = (running**2 + ALPHA**2) ** 0.5
        self.blocks = nn.ModuleList(
            _NFBlock(
                cin if i == 0 else cout,
                cout,
                freq_down if i == 0 else 1,
                group_size,
                betas[i],
                transition=i == 0,
                ws=ws,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _Fusion(nn.Module):
    def __init__(self, fast_channels: int, mid: int, out: int, ws: bool):
        super().__init__()
        self.conv1 = _WSConv2d(fast_channels, mid, FUSION_KERNEL, FUSION_STRIDE, ws=ws)
        self.conv2 = _WSConv2d(mid, out, (1, 1), ws=ws)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.conv2(self.conv1(fast))], dim=1)


class SfNfNetF0(nn.Module):
    """(B, 1, 96 mels, 300 frames) standardised slices -> (B, 1728)."""

    def __init__(self, arch: MuleArchitecture):
        super().__init__()
        ws = arch.weight_standardization
        self.slow_stem = _Stem(arch.slow_stem_channels, SLOW_STEM, ws)
        self.fast_stem = _Stem(arch.fast_stem_channels, FAST_STEM, ws)
        fast_into_fusion = (arch.fast_stem_channels[-1], *arch.fast_stage_out[:-1])
        self.fusions = nn.ModuleList(
            _Fusion(f, m, o, ws)
            for f, m, o in zip(fast_into_fusion, arch.fusion_input_channels, arch.fusion_output_channels, strict=True)
        )
        expected_vars = [1.0] + [(1.0 + ALPHA**2) ** 0.5] * 3
        self.slow_stages = nn.ModuleList(
            _Stage(i, o, d, f, arch.slow_group_size, v, ws)
            for i, o, d, f, v in zip(
                arch.slow_stage_in, arch.slow_stage_out, STAGE_DEPTHS, STAGE_FREQ_DOWNSAMPLE, expected_vars, strict=True
            )
        )
        self.fast_stages = nn.ModuleList(
            _Stage(i, o, d, f, arch.fast_group_size, v, ws)
            for i, o, d, f, v in zip(
                arch.fast_stage_in, arch.fast_stage_out, STAGE_DEPTHS, STAGE_FREQ_DOWNSAMPLE, expected_vars, strict=True
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow, fast = self.slow_stem(x), self.fast_stem(x)
        for fusion, slow_stage, fast_stage in zip(self.fusions, self.slow_stages, self.fast_stages, strict=True):
            slow = slow_stage(fusion(slow, fast))
            fast = fast_stage(fast)
        return _scaled_gelu(torch.cat([slow.mean(dim=(2, 3)), fast.mean(dim=(2, 3))], dim=1))


class MuleModel(nn.Module):
    def __init__(self, arch: MuleArchitecture):
        super().__init__()
        self.arch = arch
        self.frontend = MuleFrontEnd()
        self.backbone = SfNfNetF0(arch)


# --- the backend -----------------------------------------------------------------------------


class MuleBackend(MeanPooledBackend):
    spec = REGISTRY["mule"]
    hub_repo = HUB_REPO
    hub_files = HUB_FILES
    batch_size: ClassVar[int | None] = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model: MuleModel | None = None
        self._device = None
        self._slices_per_batch = SLICES_PER_BATCH

    @property
    def dim(self) -> int:
        return self.model.arch.dim if self.model is not None else self.spec.dim

    def load(self, weights: str | Path | None = None) -> MuleBackend:
        folder = resolve_weights(self.spec, weights)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(f"{config_path}: not readable JSON ({exc})", "fetch the weights again") from exc
        if not isinstance(config, dict):
            raise BackendError(f"{config_path}: not a MULE config", "fetch the weights again")
        arch = MuleArchitecture.from_config(config, config_path)
        state = load_state_dict(weights_path)
        model = MuleModel(arch)
        expected = {f"backbone.{k}" for k in model.backbone.state_dict()}
        backbone = {k for k in state if k.startswith("backbone.")}
        others = {k for k in state if not k.startswith(("backbone.", "frontend."))}
        missing, unexpected = sorted(expected - backbone), sorted((backbone - expected) | others)
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise BackendError(
                f"{weights_path}: not a MULE checkpoint for this config ({detail}, {len(missing) + len(unexpected)} in all)",
                "fetch the MULE weights again: mrs-tui backends fetch mule",
            )
        stored_fb = state.get("frontend.mel_fb")
        if stored_fb is not None and (
            stored_fb.shape != model.frontend.mel_fb.shape
            or not torch.allclose(stored_fb.float(), model.frontend.mel_fb, rtol=1e-4, atol=1e-6)
        ):
            raise BackendError(
                f"{weights_path}: its mel filterbank differs from MULE's front end",
                "this checkpoint was made for another front end; fetch the MULE weights again",
            )
        try:
            model.backbone.load_state_dict({k[len("backbone.") :]: state[k] for k in expected}, strict=True)
        except RuntimeError as exc:
            raise BackendError(
                f"{weights_path}: tensor shapes do not fit config.json ({str(exc).splitlines()[-1].strip()[:160]})",
                "fetch the MULE weights again: mrs-tui backends fetch mule",
            ) from exc
        self._device = pick_device(self.device)
        self._slices_per_batch = SLICES_PER_BATCH_GPU if self._device.type == "cuda" else SLICES_PER_BATCH
        self.model = model.to(self._device).eval()
        self.loaded = True
        return self

    # -- inference --

    def _slices(self, wave: np.ndarray) -> torch.Tensor:
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if wave.size == 0:
            raise BackendError("MULE got an empty waveform", "the track has no audio to analyse")
        if wave.size < MIN_SAMPLES:
            wave = np.tile(wave, math.ceil(MIN_SAMPLES / wave.size))[:MIN_SAMPLES]
        mel = self.model.frontend(torch.from_numpy(wave).to(self._device)[None])[0]
        frames = mel.shape[-1]
        windows = torch.stack([mel[:, c - SLICE_BACK : c + SLICE_FORWARD] for c in slice_centres(frames)])
        return standardise(windows)[:, None]

    def frame_sets(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per waveform, the (slices, dim) embeddings of its 3-s slices."""
        self._require_loaded()
        with torch.inference_mode():
            per_track = [self._slices(w) for w in waveforms]
            counts = [s.shape[0] for s in per_track]
            flat = torch.cat(per_track)
            outputs = [
                self.model.backbone(flat[i : i + self._slices_per_batch]).float().cpu()
                for i in range(0, flat.shape[0], self._slices_per_batch)
            ]
            return list(torch.split(torch.cat(outputs), counts))
