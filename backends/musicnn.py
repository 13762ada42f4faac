"""MusiCNN (Pons & Serra 2019): a PyTorch port that runs the real MSD/MTT weights.

Where the weights come from. The PyPI wheel ``musicnn==0.1.0`` (ISC licence) ships TensorFlow-1
checkpoints. Its Python code needs TF1-style graphs and numpy<1.17, so we never import it: the
wheel is fetched as a file (``pip download --no-deps``, or a wheel/folder/URL the user gives),
its sha256 is checked, the checkpoints are read by our own reader (`backends.tf_checkpoint`,
every CRC32C checked, no TensorFlow, no pickle) and the 64 tensors used at inference are stored
as safetensors in the user cache, under their TensorFlow names and layouts so the file can be
compared with the checkpoint one to one. Both ``MSD_musicnn`` (the default, the paper's choice)
and ``MTT_musicnn`` are converted.

Preprocessing follows musicnn 0.1.0 as it runs with librosa 0.11 and numpy 1.26 (the reference
outputs in ``shared/reference/musicnn`` were made that way): 16 kHz mono, STFT with a periodic
Hann window of 512, hop 256, ``center=True`` with *zero* padding (librosa >= 0.10; musicnn's
2019 environment padded by reflection, which changes frame 0), power spectrum, 96 Slaney mels
(0-8 kHz, area-normalised), then the mel power is rounded to float16 and ``log10(10000*x + 1)``
is taken in float32. That float16 round trip is what numpy 1.x did implicitly; numpy 2 would
compute the whole expression in float16 and overflow to inf above a mel power of 6.55, so the
cast is written out. Frames are cut into 187-frame (3 s) patches without overlap and the tail
that does not fill a patch is dropped, exactly as the extractor does.

Differences from the original, on purpose:

- Clips shorter than one patch (< 47,616 samples, about 2.98 s) make the original extractor crash
  (``UnboundLocalError``). Here their log-mel frames are repeated until they fill one patch: the
  "repeat-pad" that the models' training configuration names (``"pad_short": "repeat-pad"``).
- The extractor's ``features['penultimate']`` has a bug in musicnn 0.1.0: every row is patch 0's
  row (stale variables in its patch loop; fixed on GitHub in 2019, never released). The track
  vector here is the mean over patches of the *correct* per-patch penultimate layer (200-d,
  after its batch-norm). ``paper_compat=True`` reproduces the bug: the vector is patch 0's
  penultimate, i.e. the first 3 s of the excerpt, which is what a ``penultimate.mean(0)`` over
  the PyPI extractor's output gives.

Excerpt: like the other backends, MusiCNN analyses one 30-s window of each track (the middle by
default, the start with ``clip_position = "start"``), i.e. 10 patches. The paper fed whole
Music4All files, which are themselves 30-s clips, so this is the same amount of audio; it also
keeps indexing time flat for long tracks. Tracks shorter than 30 s are used whole.

The network, channels-first (B, C, time, mel): input batch-norm; five front-end branches (7x38
and 7x67 timbral convolutions with 204 filters, 128/64/32x1 temporal ones with 51), each
ReLU -> batch-norm -> max over frequency; three 1-D mid-end convolutions over time (561->64,
then two residual 64->64); max and mean over time, interleaved into 1506 features; batch-norm,
dense 200 + ReLU + batch-norm (the penultimate layer), dense 50 + sigmoid (the taggram).
Batch-norm comes after the ReLU and many of its scales are negative, so it does not commute
with the max over frequency. Rather than normalising the whole (B, 204, 187, 59) map, the
front end convolves with the kernels of negative-scale channels negated, takes one max (which
is then minus the minimum for those channels), restores the sign and applies bias, ReLU and the
per-channel affine batch-norm to the reduced (B, 561, 187) result. Negation is exact in
floating point and rounding is monotone, so this gives the same numbers while skipping two
passes over the largest tensors.

Layout, for speed on CPUs: the front end runs time-major and channels-last, with shifted copies
of the input as channels (the 7 time taps of the timbral kernels as 7 channels; the 128 temporal
taps as 8 channels x 16 taps dilated by 8, the 64- and 32-tap kernels zero-padded into the
128-tap one at the offsets TF's padding gives them). With a single input channel PyTorch hands
oneDNN plain NCHW tensors, and oneDNN then writes a blocked output that costs a reorder a third
as long as the convolution; these forms avoid that and make the front end about 30 % faster
(measured on the 2-core dev machine), for 10 % more arithmetic in the temporal branch.

On a GPU, cuDNN would run float32 convolutions in TF32 and move the penultimate layer by up to
4e-3 (measured on an H100); inference therefore turns TF32 off around the forward pass.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backends import REGISTRY, weights_dir
from backends._mel import mel_filterbank
from backends.base import Analysis, Backend, BackendError, WeightsMissing

if TYPE_CHECKING:
    from backends.tf_checkpoint import TFCheckpoint

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as in musicnn.extractor
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP  # the fewest samples that give one full patch
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
TOP_TAGS = 10  # tags kept per track in the store

WHEEL_REQUIREMENT = "musicnn==0.1.0"
WHEEL_FILENAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_URL_HINT = "https://pypi.org/project/musicnn/0.1.0/#files"

MODELS = ("MSD_musicnn", "MTT_musicnn")
DEFAULT_MODEL = "MSD_musicnn"


def labels(model: str) -> tuple[str, ...]:
    """The 50 tags of `model`'s outputs in output order (musicnn/configuration.py), shipped as
    data/backends/musicnn/<model>.tags.txt."""
    return _shipped_lines(f"{model}.tags.txt")


def pinned_sha256(name: str) -> str:
    """sha256 of a file of the musicnn 0.1.0 wheel: the wheel itself, or a checkpoint file in it
    (``musicnn/MSD_musicnn/.index``). A folder holding an unpacked wheel or an installed musicnn
    package is accepted only with these exact bytes. Shipped as data/backends/musicnn/SHA256SUMS."""
    digests = {path: digest for digest, path in (line.split(maxsplit=1) for line in _shipped_lines("SHA256SUMS"))}
    return digests[name]


@functools.cache
def _shipped_lines(name: str) -> tuple[str, ...]:
    from mrs_tui.paths import shipped_data

    text = shipped_data("backends", "musicnn", name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


# TensorFlow layer names of the 64 tensors used at inference, by role.
_BN_LAYERS = [f"batch_normalization{'' if i == 0 else f'_{i}'}" for i in range(11)]
_BN_PARTS = ("gamma", "beta", "moving_mean", "moving_variance")
_CONV_LAYERS = [f"conv2d{'' if i == 0 else f'_{i}'}" for i in range(8)]
INFERENCE_TENSORS = (
    [f"{layer}/{part}" for layer in _BN_LAYERS for part in _BN_PARTS]
    + [f"{layer}/{part}" for layer in _CONV_LAYERS for part in ("kernel", "bias")]
    + [f"{layer}/{part}" for layer in ("dense", "dense_1") for part in ("kernel", "bias")]
)


def canonical_model(value: object) -> str:
    """'MSD_musicnn' or 'MTT_musicnn' for any accepted spelling (msd, MTT, MSD_musicnn...)."""
    text = str(value).strip().lower().removesuffix("_musicnn")
    for model in MODELS:
        if model.lower().removesuffix("_musicnn") == text:
            return model
    raise BackendError(f"unknown MusiCNN model {value!r}", "choose msd (the default) or mtt")


# -- preprocessing ---------------------------------------------------------------------------------


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


class LogMel:
    """Waveforms -> musicnn's log-mel frames, all tracks in one FFT and one matrix product.

    numpy rather than torch: its float64 FFT, float32 |X| (hypot) and float32 log10 are the ones
    the reference ran, which makes 99.99 % of the values bit-identical to the original instead
    of about half (torch's complex abs and log10 differ in the last bit). The cost is a few
    milliseconds per 30 s, next to hundreds for the network.
    """

    def __init__(self) -> None:
        self.window = _periodic_hann(N_FFT)
        # 96 Slaney mels, area-normalised: librosa.filters.mel's defaults, as musicnn called it.
        self.mel_t = np.ascontiguousarray(mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).T)

    @staticmethod
    def n_frames(n_samples: int) -> int:
        return 1 + n_samples // HOP

    def __call__(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (frames, 96) float32 array per waveform."""
        framed = []
        for y in waveforms:
            padded = np.pad(np.asarray(y, dtype=np.float32), N_FFT // 2)
            framed.append(np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP])
        frames = np.concatenate(framed)
        # librosa multiplies the float32 frames by a float64 window, runs a float64 FFT and
        # stores the spectrum as complex64; |X|^2 and the mel product are float32.
        spectrum = np.fft.rfft(frames * self.window, axis=-1).astype(np.complex64)
        mel = np.abs(spectrum) ** 2 @ self.mel_t
        # numpy 1.x promoted 10000 * float16 to float32; say so, since numpy 2 would not.
        logmel = np.log10(np.float32(10000) * mel.astype(np.float16).astype(np.float32) + np.float32(1))
        return np.split(logmel, np.cumsum([len(f) for f in framed])[:-1])


def to_patches(logmel: np.ndarray) -> np.ndarray:
    """(T, 187, 96) non-overlapping patches, tail dropped; shorter input repeated to one patch."""
    if len(logmel) == 0:
        raise BackendError("MusiCNN got an empty waveform", "the audio excerpt has no samples")
    if len(logmel) < PATCH_FRAMES:
        logmel = np.tile(logmel, (-(-PATCH_FRAMES // len(logmel)), 1))
    count = (len(logmel) - PATCH_FRAMES) // PATCH_FRAMES + 1
    return logmel[: count * PATCH_FRAMES].reshape(count, PATCH_FRAMES, N_MELS)


# -- the network -------------------------------------------------------------------------------------


def _batch_norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _ConvBN(nn.Module):
    """A front-end branch's weights: conv (time x freq) then batch-norm; `MusicnnNet` runs them."""

    def __init__(self, filters: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _batch_norm(filters)


class _MidConv(nn.Module):
    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, 64, 7, padding=3)
        self.bn = _batch_norm(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


@dataclass
class PatchOutputs:
    penultimate: torch.Tensor  # (B, 200)
    logits: torch.Tensor  # (B, 50)
    mean_pool: torch.Tensor  # (B, 753)
    max_pool: torch.Tensor  # (B, 753)

    @property
    def taggram(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


TEMPORAL_KERNELS = (128, 64, 32)
_PAD_BEFORE, _PAD_AFTER = 63, 64  # TF 'SAME' for the 128-long kernel: the smaller half first
_FRONT_CHANNELS = (204, 204, 51, 51, 51)
_TEMPORAL_PHASES = 8  # the 128-tap temporal kernel runs as 8 shifted input channels x 16 taps


class MusicnnNet(nn.Module):
    """The MSD/MTT MusiCNN graph (front-end factor 1.6, 64 mid-end filters, 200 back-end units).

    Parameters live in ordinary conv/batch-norm/linear modules (see `from_tf_tensors`); `prepare`
    folds what inference needs into buffers: the batch-norm affines, the sign-flipped front-end
    kernels, rearranged for the channels-last front end described in the module docstring.
    """

    def __init__(self, n_classes: int = 50) -> None:
        super().__init__()
        self.input_bn = _batch_norm(1)
        self.timbral_a = _ConvBN(204, (7, 38))
        self.timbral_b = _ConvBN(204, (7, 67))
        self.temporal = nn.ModuleList(_ConvBN(51, (k, 1)) for k in TEMPORAL_KERNELS)
        self.mid = nn.ModuleList([_MidConv(561), _MidConv(64), _MidConv(64)])
        self.flat_bn = _batch_norm(1506)
        self.dense = nn.Linear(1506, 200)
        self.dense_bn = _batch_norm(200)
        self.output = nn.Linear(200, n_classes)
        self.prepare()

    @torch.no_grad()
    def prepare(self) -> MusicnnNet:
        """Recompute the folded inference constants; call after changing any weight."""
        branches = [self.timbral_a, self.timbral_b, *self.temporal]
        affines = [_bn_affine(branch.bn) for branch in branches]
        scale = torch.cat([a[0] for a in affines])
        sign = torch.where(scale < 0, -1.0, 1.0)
        signs = torch.split(sign, _FRONT_CHANNELS)
        temporal = torch.zeros(sum(_FRONT_CHANNELS[2:]), TEMPORAL_KERNELS[0])
        row = 0
        for branch, branch_sign, k in zip(self.temporal, signs[2:], TEMPORAL_KERNELS, strict=True):
            first = _PAD_BEFORE - (k - 1) // 2
            temporal[row : row + len(branch_sign), first : first + k] = (
                branch.conv.weight[:, 0, :, 0] * branch_sign[:, None]
            )
            row += len(branch_sign)
        channels_last = torch.channels_last
        input_scale, input_shift = _bn_affine(self.input_bn)
        folded = {
            "input_scale": input_scale,
            "input_shift": input_shift,
            # (out, time tap, 1, freq): the 7 time taps become 7 input channels.
            "kernel_a": (self.timbral_a.conv.weight * signs[0].view(-1, 1, 1, 1)).permute(0, 2, 1, 3),
            "kernel_b": (self.timbral_b.conv.weight * signs[1].view(-1, 1, 1, 1)).permute(0, 2, 1, 3),
            # (out, tap % 8, tap // 8, 1): 8 input channels, 16 taps dilated by 8.
            "kernel_temporal": temporal.view(len(temporal), -1, _TEMPORAL_PHASES).permute(0, 2, 1).unsqueeze(-1),
            "front_sign": sign,
            "front_bias": torch.cat([branch.conv.bias for branch in branches]),
            "front_scale": scale,
            "front_shift": torch.cat([a[1] for a in affines]),
        }
        device = self.input_bn.weight.device
        for name, value in folded.items():
            if value.dim() == 4:
                value = value.contiguous(memory_format=channels_last)
            self.register_buffer(f"_{name}", value.to(device), persistent=False)
        return self

    def front_end(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 561, time): the five branches after ReLU, batch-norm and max over frequency."""
        x = patches * self._input_scale + self._input_shift  # (B, time, mel)
        padded = F.pad(x, (0, 0, _PAD_BEFORE, _PAD_AFTER))
        # Shifted copies of the input as channels, laid out channels-last (B, time, mel, shift):
        # 7 for the timbral kernels (3 frames of padding each side), 8 for the temporal ones.
        timbral = padded[:, _PAD_BEFORE - 3 : padded.shape[1] - _PAD_AFTER + 3].unfold(1, 7, 1)
        timbral = timbral.contiguous().permute(0, 3, 1, 2)
        phases = padded.unfold(1, _TEMPORAL_PHASES, 1).contiguous().permute(0, 3, 1, 2)

        def max_over_frequency(y: torch.Tensor) -> torch.Tensor:  # (B, C, time, freq) channels-last
            return y.permute(0, 2, 3, 1).amax(dim=2)  # (B, time, C)

        # With the kernels of negative-scale channels negated, one max gives max(y) where the
        # batch-norm scale is >= 0 and -min(y) where it is < 0; the sign below undoes that.
        extremes = torch.cat(
            [
                max_over_frequency(F.conv2d(timbral, self._kernel_a)),
                max_over_frequency(F.conv2d(timbral, self._kernel_b)),
                max_over_frequency(F.conv2d(phases, self._kernel_temporal, dilation=(_TEMPORAL_PHASES, 1))),
            ],
            dim=2,
        )  # (B, time, 561)
        activated = torch.relu(torch.addcmul(self._front_bias, extremes, self._front_sign))
        return torch.addcmul(self._front_shift, activated, self._front_scale).transpose(1, 2).contiguous()

    def forward(self, patches: torch.Tensor) -> PatchOutputs:
        """`patches`: (B, 187, 96) log-mel, time first as the extractor feeds them."""
        front = self.front_end(patches)
        m1 = self.mid[0](front)
        m2 = self.mid[1](m1) + m1
        m3 = self.mid[2](m2) + m2
        features = torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, time)
        max_pool = features.amax(dim=2)
        mean_pool = features.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved max_0, mean_0, ...
        penultimate = self.dense_bn(torch.relu(self.dense(self.flat_bn(flat))))
        return PatchOutputs(penultimate, self.output(penultimate), mean_pool, max_pool)

    @classmethod
    def from_tf_tensors(cls, tensors: dict[str, np.ndarray | torch.Tensor]) -> MusicnnNet:
        """Build from the checkpoint's tensors, named and laid out as in TensorFlow."""
        missing = [name for name in INFERENCE_TENSORS if name not in tensors]
        if missing:
            raise BackendError(
                f"MusiCNN weights lack {len(missing)} tensors (first: {missing[0]})",
                "fetch the weights again: mrs-tui backends fetch musicnn",
            )
        n_classes = int(np.asarray(tensors["dense_1/bias"]).shape[0])
        state: dict[str, torch.Tensor] = {}
        for tf_name, key, shape, kind in _tf_layout(n_classes):
            value = torch.as_tensor(np.asarray(tensors[tf_name], dtype=np.float32))
            if tuple(value.shape) != shape:
                raise BackendError(
                    f"MusiCNN weight {tf_name} has shape {tuple(value.shape)}, expected {shape}",
                    "fetch the weights again: mrs-tui backends fetch musicnn",
                )
            if kind == "conv2d":  # (kh, kw, in, out) -> (out, in, kh, kw)
                value = value.permute(3, 2, 0, 1)
            elif kind == "conv1d":  # (k, in, 1, out) -> (out, in, k)
                value = value[:, :, 0, :].permute(2, 1, 0)
            elif kind == "dense":  # (in, out) -> (out, in)
                value = value.T
            state[key] = value.contiguous()
        net = cls(n_classes)
        state.update({k: torch.tensor(0) for k in net.state_dict() if k.endswith("num_batches_tracked")})
        net.load_state_dict(state, strict=True)
        return net.prepare().eval()

    def to_tf_tensors(self) -> dict[str, np.ndarray]:
        """The inverse of `from_tf_tensors`: this model's tensors under TensorFlow names and layouts."""
        state = self.state_dict()
        tensors = {}
        for tf_name, key, _, kind in _tf_layout(self.output.out_features):
            value = state[key].detach().cpu()
            if kind == "conv2d":
                value = value.permute(2, 3, 1, 0)
            elif kind == "conv1d":
                value = value.permute(2, 1, 0).unsqueeze(2)
            elif kind == "dense":
                value = value.T
            tensors[tf_name] = np.ascontiguousarray(value.numpy(), dtype=np.float32)
        return tensors


def _tf_layout(n_classes: int = 50) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(TensorFlow name, PyTorch state key, TensorFlow shape, kind) of every inference tensor."""
    layout = []

    def bn(layer: str, module: str, channels: int) -> None:
        for part, key in zip(_BN_PARTS, ("weight", "bias", "running_mean", "running_var"), strict=True):
            layout.append((f"{layer}/{part}", f"{module}.{key}", (channels,), "vector"))

    def weights(layer: str, module: str, shape: tuple[int, ...], kind: str) -> None:
        layout.append((f"{layer}/kernel", f"{module}.weight", shape, kind))
        layout.append((f"{layer}/bias", f"{module}.bias", (shape[-1],), "vector"))

    bn("batch_normalization", "input_bn", 1)
    weights("conv2d", "timbral_a.conv", (7, 38, 1, 204), "conv2d")
    bn("batch_normalization_1", "timbral_a.bn", 204)
    weights("conv2d_1", "timbral_b.conv", (7, 67, 1, 204), "conv2d")
    bn("batch_normalization_2", "timbral_b.bn", 204)
    for i, k in enumerate(TEMPORAL_KERNELS):
        weights(f"conv2d_{2 + i}", f"temporal.{i}.conv", (k, 1, 1, 51), "conv2d")
        bn(f"batch_normalization_{3 + i}", f"temporal.{i}.bn", 51)
    for i, channels in enumerate((561, 64, 64)):
        weights(f"conv2d_{5 + i}", f"mid.{i}.conv", (7, channels, 1, 64), "conv1d")
        bn(f"batch_normalization_{6 + i}", f"mid.{i}.bn", 64)
    bn("batch_normalization_9", "flat_bn", 1506)
    weights("dense", "dense", (1506, 200), "dense")
    bn("batch_normalization_10", "dense_bn", 200)
    weights("dense_1", "output", (200, n_classes), "dense")
    return layout


# -- getting the weights -------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint_from_wheel(archive: zipfile.ZipFile, model: str) -> TFCheckpoint:
    from backends.tf_checkpoint import TFCheckpoint

    prefix = f"musicnn/{model}/"
    try:
        index = archive.read(prefix + ".index")
        data = archive.read(prefix + ".data-00000-of-00001")
    except KeyError as exc:
        raise WeightsMissing(f"the wheel has no {prefix} checkpoint", f"use the {WHEEL_FILENAME} wheel") from exc
    return TFCheckpoint.from_bytes(index, {0: data}, source=f"{WHEEL_FILENAME}:{prefix}")


def _write_safetensors(checkpoint: TFCheckpoint, model: str, target: Path, origin: str) -> Path:
    from safetensors.numpy import save_file

    tensors = {name: checkpoint.read(name) for name in INFERENCE_TENSORS}
    MusicnnNet.from_tf_tensors(tensors)  # refuse to store anything the model cannot load
    path = target / f"{model}.safetensors"
    partial = path.with_suffix(".partial")
    metadata = {
        "model": model,
        "origin": origin,
        "layout": "TensorFlow names and layouts: conv (kh, kw, in, out), dense (in, out)",
        "licence": "ISC, Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019",
    }
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    return path


def convert_wheel(wheel: Path, target: Path) -> list[Path]:
    """Check the musicnn 0.1.0 wheel and store both models' inference tensors in `target`."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise WeightsMissing(f"{wheel} does not exist", f"give the path of {WHEEL_FILENAME}")
    digest = _sha256_file(wheel)
    expected = pinned_sha256(WHEEL_FILENAME)
    if digest != expected:
        raise WeightsMissing(
            f"{wheel} is not the musicnn 0.1.0 wheel (sha256 {digest[:16]}..., expected {expected[:16]}...)",
            f"download {WHEEL_FILENAME} again: pip download --no-deps {WHEEL_REQUIREMENT}",
        )
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        return [
            _write_safetensors(
                _checkpoint_from_wheel(archive, model), model, target, f"{WHEEL_FILENAME} sha256={digest}"
            )
            for model in MODELS
        ]


def convert_checkpoint_folder(folder: Path, target: Path) -> list[Path]:
    """An unpacked wheel or installed musicnn package (``.../musicnn/MSD_musicnn/.index``)."""
    from backends.tf_checkpoint import TFCheckpoint

    package = folder / "musicnn" if (folder / "musicnn" / DEFAULT_MODEL).is_dir() else folder
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        prefix = f"{package / model}{os.sep}"  # the checkpoint's files are named ".index", ".data-..."
        if not Path(prefix + ".index").is_file():
            continue
        for suffix in (".index", ".data-00000-of-00001"):
            actual = _sha256_file(Path(prefix + suffix))
            if actual != pinned_sha256(f"musicnn/{model}/{suffix}"):
                raise WeightsMissing(
                    f"{prefix}{suffix} differs from the file in the musicnn 0.1.0 wheel",
                    f"use the files of {WHEEL_FILENAME}, or let mrs-tui download it: mrs-tui backends fetch musicnn",
                )
        checkpoint = TFCheckpoint.open(prefix)
        written.append(_write_safetensors(checkpoint, model, target, f"{package} (musicnn 0.1.0 checkpoint)"))
    if not written:
        raise WeightsMissing(f"{folder} holds no MusiCNN checkpoint", "give the wheel file or the musicnn folder")
    return written


def _offline_fix(first: str = "") -> str:
    return (
        f"{first}on a machine with network access run `pip download --no-deps {WHEEL_REQUIREMENT} -d DIR`, "
        f"then here `mrs-tui backends fetch musicnn --from DIR/{WHEEL_FILENAME}` "
        "(until then the app uses the mfcc backend)"
    )


# What pip's stderr holds when the index cannot be reached at all (its last line then only says
# "No matching distribution found", which reads as if the package did not exist).
_NETWORK_FAILURES = (
    "NewConnectionError",
    "Connection refused",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeout",
    "Network is unreachable",
    "ProxyError",
)


def download_wheel(folder: Path, timeout: float = 600.0) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into `folder` (pip's index settings apply)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(folder),
        WHEEL_REQUIREMENT,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WeightsMissing(
            f"could not download {WHEEL_REQUIREMENT} (pip timed out after {timeout:.0f} s)", _offline_fix()
        ) from exc
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1][:200] if lines else f"pip exited with {result.returncode}"
        stderr = result.stderr or ""
        if "No module named pip" in stderr:
            reason = "pip is not installed in this Python"
        elif any(sign in stderr for sign in _NETWORK_FAILURES):
            reason = "PyPI is not reachable"
        elif "No matching distribution" in stderr:
            reason = "no package index pip can reach offers it: offline, or pip is set to another index"
        raise WeightsMissing(f"could not download {WHEEL_REQUIREMENT} from PyPI ({reason})", _offline_fix())
    wheel = folder / WHEEL_FILENAME
    if not wheel.is_file():
        raise WeightsMissing(f"pip did not leave {WHEEL_FILENAME} in {folder}", _offline_fix())
    return wheel


def _download_url(url: str, folder: Path) -> Path:
    import urllib.error
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WHEEL_FILENAME
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsMissing(f"could not download {url} ({exc})", _offline_fix()) from exc
    return path


def install_weights(source: str | Path | None = None) -> Path:
    """Fill the user cache with the converted MSD and MTT weights; returns the folder."""
    target = weights_dir("musicnn")
    from mrs_tui.paths import cache_dir

    if source is None and os.environ.get("MRS_TUI_MUSICNN_WHEEL"):
        source = os.environ["MRS_TUI_MUSICNN_WHEEL"]
    text = "" if source is None else str(source)
    if source is None or text.startswith(("http://", "https://")):
        downloads = cache_dir() / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads, prefix="musicnn-") as scratch:
            wheel = download_wheel(Path(scratch)) if source is None else _download_url(text, Path(scratch))
            convert_wheel(wheel, target)
        return target
    path = Path(source).expanduser()
    if not path.exists():
        raise WeightsMissing(
            f"{path} does not exist", _offline_fix(f"give the {WHEEL_FILENAME} file, a folder holding it, or its URL; ")
        )
    if path.is_file():
        convert_wheel(path, target)
    elif (path / WHEEL_FILENAME).is_file():
        convert_wheel(path / WHEEL_FILENAME, target)
    elif (path / f"{DEFAULT_MODEL}.safetensors").is_file():
        from backends._weights import install_from_folder

        install_from_folder(REGISTRY["musicnn"], path)
    else:
        convert_checkpoint_folder(path, target)
    return target


# -- the backend -----------------------------------------------------------------------------------------


@dataclass
class TrackOutputs:
    penultimate: np.ndarray  # (T, 200), correct per patch
    taggram: np.ndarray  # (T, n_tags)


class MusicnnBackend(Backend):
    spec = REGISTRY["musicnn"]
    batch_size = 8  # tracks per call from the indexer: 80 patches of 30-s excerpts
    # Patches per forward pass on a CPU. The largest transient map is 9 MB per patch. glibc
    # serves blocks above 32 MB with fresh pages from the kernel, whose page faults cost a
    # 30-s clip about 30 ms at 32 patches per pass (49k faults per call). Two patches per
    # pass stay under that size and run 1.3x faster per track than 40 (8 tracks per call,
    # 2 cores, each shard in its own thread, see `run_patches`).
    patches_per_pass = 2

    def __init__(self, *, paper_compat: bool = False, device: str | None = None, **options: object) -> None:
        super().__init__(paper_compat=paper_compat, device=device, **options)
        self.model = canonical_model(options.get("model", DEFAULT_MODEL))
        self.labels = labels(self.model)
        self._pool = None  # the CPU shard workers (`run_patches`), and how many
        self._pool_workers = 0

    @classmethod
    def install_from(cls, source: str | Path, *, allow_pickle: bool) -> Path:
        """The wheel, a folder holding it, its URL, or converted weights: checked and converted."""
        return install_weights(source)

    @classmethod
    def download(cls, *, revision: str | None, allow_pickle: bool, **options: object) -> Path:
        if revision:
            raise BackendError("MusiCNN weights come from one fixed wheel", f"drop --revision ({WHEEL_REQUIREMENT})")
        return install_weights(None)

    def load(self, weights: str | Path | None = None) -> MusicnnBackend:
        from backends._weights import hub_offline, load_state_dict, pick_device

        filename = f"{self.model}.safetensors"
        if weights is None:
            folder = weights_dir(self.name)
            if not (folder / filename).is_file():
                if hub_offline():
                    raise WeightsMissing(
                        f"MusiCNN weights are not in {folder} and offline mode is on (HF_HUB_OFFLINE)",
                        _offline_fix("run `mrs-tui backends fetch musicnn` with network access, or "),
                    )
                install_weights(None)
            path = folder / filename
        else:
            path = Path(weights).expanduser()
            if path.is_dir():
                path = path / filename
            elif path.suffix == ".whl":
                path = install_weights(path) / filename
            if not path.is_file():
                raise WeightsMissing(f"{path} does not exist", "run: mrs-tui backends fetch musicnn")
        self.device_ = pick_device(self.device)
        self.net = MusicnnNet.from_tf_tensors(load_state_dict(path)).requires_grad_(False).to(self.device_)
        self.logmel = LogMel()
        if self.device_.type == "cuda":
            self.patches_per_pass = 256  # a GPU keeps gaining up to a few hundred patches per pass
        if self.net.output.out_features != len(self.labels):
            raise BackendError(f"{path} has {self.net.output.out_features} outputs, {self.model} has 50")
        self.loaded = True
        return self

    # -- running ---------------------------------------------------------------------------------------

    def patches(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each waveform's (T, 187, 96) log-mel patches, as musicnn's ``batch_data`` builds them."""
        self._require_loaded()
        for y in waveforms:
            if len(y) == 0:
                raise BackendError("MusiCNN got an empty waveform", "the audio excerpt has no samples")
        return [to_patches(logmel) for logmel in self.logmel(waveforms)]

    def run_patches(self, patches: np.ndarray | torch.Tensor) -> PatchOutputs:
        """The network on (N, 187, 96) patches, in passes of `patches_per_pass`.

        On a CPU with T torch threads, the patches are cut into T shards, each run by a worker
        thread of its own with one torch thread: one 30-s clip (10 patches) took 174 ms that way
        against 200 ms with 2 threads inside each convolution (2 cores, bench/bench_musicnn.py).
        The calling thread's torch thread count is what T follows, so the indexer's split holds.
        """
        self._require_loaded()
        batch = torch.as_tensor(patches).to(self.device_)
        shards = min(torch.get_num_threads(), len(batch)) if self.device_.type == "cpu" else 1
        if shards > 1:
            pool = self._shard_pool(shards)
            parts = [pool.submit(self._run_passes, shard) for shard in torch.tensor_split(batch, shards)]
            outputs = [out for part in parts for out in part.result()]
        else:
            outputs = self._run_passes(batch)
        return PatchOutputs(*(torch.cat([getattr(o, f.name) for o in outputs]).cpu() for f in fields(PatchOutputs)))

    def _run_passes(self, patches: torch.Tensor) -> list[PatchOutputs]:
        with torch.inference_mode(), self._exact_math():
            return [self.net(chunk) for chunk in torch.split(patches, self.patches_per_pass)]

    def _shard_pool(self, workers: int):
        """`workers` threads with one torch thread each (the count is per thread), kept between calls."""
        pool = self._pool
        if pool is None or self._pool_workers != workers:
            from concurrent.futures import ThreadPoolExecutor

            if pool is not None:
                pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(workers, "musicnn", initializer=torch.set_num_threads, initargs=(1,))
            self._pool, self._pool_workers = pool, workers
        return pool

    def _exact_math(self):
        # cuDNN would otherwise run float32 convolutions in TF32, 1e-3 away from the reference.
        if self.device_.type == "cuda":
            return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        from contextlib import nullcontext

        return nullcontext()

    def track_outputs(self, waveforms: Sequence[np.ndarray]) -> list[TrackOutputs]:
        """Per-patch penultimate and taggram of each track; one network batch for all of them."""
        self._require_loaded()
        per_track = self.patches(waveforms)
        out = self.run_patches(np.concatenate(per_track))
        counts = [len(p) for p in per_track]
        penultimate = torch.split(out.penultimate, counts)
        taggram = torch.split(out.taggram, counts)
        return [TrackOutputs(p.numpy(), t.numpy()) for p, t in zip(penultimate, taggram, strict=True)]

    def _vector(self, track: TrackOutputs) -> np.ndarray:
        if self.paper_compat:
            return track.penultimate[0].astype(np.float32)
        return track.penultimate.mean(axis=0, dtype=np.float64).astype(np.float32)

    def top_tags(self, taggram: np.ndarray, k: int = TOP_TAGS) -> list[list]:
        """[[tag, probability], ...] best first, from the taggram averaged over patches."""
        mean = taggram.mean(axis=0)
        order = np.argsort(-mean, kind="stable")[:k]
        return [[self.labels[i], round(float(mean[i]), 4)] for i in order]

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        if not waveforms:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._vector(t) for t in self.track_outputs(waveforms)])

    def analyze(self, waveforms: Sequence[np.ndarray]) -> list[Analysis]:
        return [
            Analysis(vector=self._vector(t), extras={"tags": self.top_tags(t.taggram)})
            for t in self.track_outputs(waveforms)
        ]

    def analyze_frames(self, waveforms: Sequence[np.ndarray]) -> list[Analysis]:
        """Also the per-patch vectors (T, 200) and the taggram (T, 50) with its tag names.

        With ``paper_compat`` the frames are what musicnn 0.1.0's extractor returns (patch 0's
        row repeated), so that the vector stays their mean.
        """
        results = []
        for track in self.track_outputs(waveforms):
            frames = track.penultimate
            if self.paper_compat:
                frames = np.repeat(frames[:1], len(frames), axis=0)
            extras = {
                "tags": self.top_tags(track.taggram),
                "model": self.model,
                "patch_seconds": PATCH_FRAMES * HOP / SAMPLE_RATE,
                "tag_names": list(self.labels),
                "taggram": track.taggram.tolist(),
            }
            results.append(Analysis(vector=self._vector(track), frames=frames, extras=extras))
        return results
