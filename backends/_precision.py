"""Reduced-precision inference for the heavy backends (MERT, Music2Vec, MusicFM, MuQ) on a CPU.

``--backend-option precision=int8`` or ``precision=bf16``; the default, ``fp32``, is what every
backend computed before this option existed. A precision other than fp32 changes the vectors
a little, so it is part of the embedding version (``v1-1+precision=int8``) and an index never
mixes them with fp32 vectors. How close they stay is measured on real audio by
`backends.fidelity` (``mrs-tui backends check-precision``).

Design decisions:

- ``int8`` is dynamic quantisation of the linear layers (weights int8 once at load time,
  activations quantised per call, int32 accumulation): fbgemm's kernels, through
  ``torch.ao.quantization.quantize_dynamic``. torch 2.13 marks ``torch.ao.quantization`` as
  deprecated in favour of torchao's ``quantize_``, but torchao's int8 dynamic path on a CPU
  only gains with ``torch.compile``; the eager fbgemm kernels are what runs fast here today.
  The deprecation warning is silenced for this one call. The move to torchao is one function.
- Convolutions that are matrix products in disguise are rewritten as linear layers first
  (kernel k, stride s over C channels is a linear layer over overlapping windows of k*C
  values, taken as a view; exact in float32 up to rounding). The pointwise (kernel 1)
  convolutions of the conformer blocks are then quantised like any linear layer. The strided
  convolutions of the wav2vec2-style waveform front end stay float32 matrix products (faster
  than torch's Conv1d here): quantising them cost MERT up to 0.05 of cosine on a tiny model,
  against 1e-4 for the transformer's layers — one activation scale per tensor is too coarse
  for features that close to the waveform. The first front-end layer (one input channel, ten
  taps) stays a convolution. The 2-D convolutions of the conformer front end stay float32
  too: unfolded into a matrix product they ran slower than oneDNN's direct convolution on
  this kind of CPU, quantised or not.
- At both reduced precisions on a CPU, the wav2vec2-style waveform front end of MERT and
  Music2Vec runs time-major (`backends._feature_encoder`): its layout, not its arithmetic,
  was most of their time per clip. At int8 it computes in float32; at bf16, its layers after
  the first run in bfloat16.
- ``bf16`` runs the encoder under bfloat16 autocast (the mel front end, norms and pooling stay
  float32), with the 2-D convolutions channels-last (`channels_last_convolutions`). It is
  offered only where the CPU has bfloat16 matrix instructions (AVX-512-BF16 or AMX, as oneDNN
  reports them) or on a CUDA GPU; elsewhere bfloat16 is emulated and slower than float32, and
  the option is refused with a message saying so.
- ``int8`` runs one clip per forward pass: activations are quantised with one scale per
  tensor, so in a batch a clip's vector would depend on the clips beside it, and the indexer
  (batches) and ``mrs-tui embed`` (one file) would disagree. On a CPU batching gains little.
- ``int8`` needs the CPU: quantised kernels exist for x86 and ARM CPUs only.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import nn

from backends.base import BackendError

PRECISIONS = ("fp32", "int8", "bf16")
DEFAULT_PRECISION = "fp32"
# Output frames per matrix product in a windowed convolution: bounds the window copy that the
# quantised kernel makes (4096 frames x 1536 values x 4 bytes = 25 MB) without starving it.
WINDOW_CHUNK_FRAMES = 4096


def precision_option(options: dict[str, Any]) -> str:
    """The precision a backend's options ask for, checked; "fp32" when they ask for none."""
    value = str(options.get("precision") or DEFAULT_PRECISION).lower()
    if value not in PRECISIONS:
        raise BackendError(f"precision {value!r} is not one mrs-tui offers", f"choose one of: {', '.join(PRECISIONS)}")
    return value


def cpu_has_native_bf16() -> bool:
    """Does oneDNN run bfloat16 matrix products natively here (AVX-512-BF16 or AMX)?"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_supported(precision: str, device_type: str) -> None:
    """Refuse a precision this machine cannot run faster than fp32, with a line saying what to do."""
    if precision == "int8" and device_type != "cpu":
        raise BackendError(
            f"precision=int8 runs on the CPU only (quantised kernels), not on {device_type}",
            "drop precision=int8 on a GPU (it runs in float16 there already), or add --backend-option device=cpu",
        )
    if precision == "bf16" and device_type == "cpu" and not cpu_has_native_bf16():
        raise BackendError(
            "precision=bf16 needs a CPU with bfloat16 instructions (AVX-512-BF16 or AMX); this one emulates "
            "bfloat16, which is slower than fp32",
            "use --backend-option precision=int8 on this machine",
        )


def prepare_model(model, precision: str, device_type: str, *, check: bool = True):
    """`model` ready to run at `precision` (an int8 copy has quantised linear layers); eval mode."""
    if check:
        check_supported(precision, device_type)
    if precision != DEFAULT_PRECISION and device_type == "cpu":
        from backends._feature_encoder import use_time_major_feature_encoder

        use_time_major_feature_encoder(model, torch.bfloat16 if precision == "bf16" else torch.float32)
    if precision == "bf16" and device_type == "cpu":
        channels_last_convolutions(model)
    if precision == "int8":
        return quantize_int8(model)
    return model


def channels_last_convolutions(model) -> int:
    """Store every 2-D convolution's weights channels-last, so that its maps are computed that way.

    oneDNN's bfloat16 convolutions reorder channels-first maps to their blocked layout and back;
    on the conformers' 512-channel mel front end that reorder cost more than the convolutions
    (MusicFM at bf16: 2.1 s -> 1.2 s per 30-s clip on a CPU with AMX). At float32 it gains nothing.
    """
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convolutions:
        conv.to(memory_format=torch.channels_last)
    return len(convolutions)


def max_batch_for(precision: str, batch: int) -> int:
    """Clips per forward pass at `precision` (see the module notes on int8)."""
    return 1 if precision == "int8" else batch


def compute_context(precision: str, device_type: str):
    """The autocast a forward pass runs under for `precision` (none for fp32 and int8 on CPU)."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if device_type == "cuda":  # the backends' long-standing GPU default
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# -- int8 -----------------------------------------------------------------------------------


def quantize_int8(model):
    """Convolutions that are matrix products become linear layers; every linear layer then int8."""
    linearise_convolutions(model)
    with warnings.catch_warnings():
        # torch.ao.quantization's deprecation notice, and its note on quantized tensor creation.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_tensor.*")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=True)


def linearise_convolutions(model, *, min_taps: int = 64) -> int:
    """Replace every plain Conv1d with at least `min_taps` inputs per output by a `WindowedConv1d`.

    Plain: one group, no dilation, no padding. Returns how many were replaced.
    """
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if (
                type(child) is nn.Conv1d
                and child.groups == 1
                and child.dilation == (1,)
                and child.padding == (0,)
                and child.in_channels * child.kernel_size[0] >= min_taps
            ):
                setattr(parent, child_name, WindowedConv1d.from_conv(child))
                replaced += 1
    return replaced


class FloatLinear(nn.Linear):
    """A linear layer that int8 quantisation leaves alone (it matches layer types exactly)."""


class WindowedConv1d(nn.Module):
    """A strided Conv1d computed as a linear layer over overlapping windows of the input.

    Input and output are (B, C, T) like the convolution's. Windows are a view of the
    time-major input; the output is returned as a transposed view, so a following
    window step (or a transpose back to time-major) costs no copy.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool):
        super().__init__()
        self.in_channels = in_channels
        self.kernel = kernel
        self.stride = stride
        # Pointwise: quantised with the other linear layers. Wider kernels: kept float (see above).
        linear_class = nn.Linear if kernel == 1 else FloatLinear
        self.linear = linear_class(in_channels * kernel, out_channels, bias=bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv1d) -> WindowedConv1d:
        module = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.bias is not None)
        with torch.no_grad():
            # (out, in, k) -> (out, k, in): a window is k time steps of all channels.
            module.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                module.linear.bias.copy_(conv.bias)
        return module.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time_major = x.transpose(1, 2).contiguous()  # (B, T, C); free when x is a transposed view
        batch, frames, channels = time_major.shape
        if frames < self.kernel:
            raise RuntimeError(f"input of {frames} frames is shorter than the kernel ({self.kernel})")
        # (B, T', C, k) -> (B, T', k, C): k and C are adjacent in memory, so the reshape is a view.
        windows = time_major.unfold(1, self.kernel, self.stride).permute(0, 1, 3, 2)
        windows = windows.reshape(batch, windows.shape[1], self.kernel * channels)
        outputs = [
            self.linear(windows[:, start : start + WINDOW_CHUNK_FRAMES])
            for start in range(0, windows.shape[1], WINDOW_CHUNK_FRAMES)
        ]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        return out.transpose(1, 2)
