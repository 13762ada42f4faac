"""The wav2vec2-style waveform front end (HuBERT/MERT, data2vec/Music2Vec), computed time-major.

transformers runs it as seven Conv1d layers on (batch, channels, time). On a CPU that layout
costs more than the arithmetic. oneDNN writes the first layer's output (512 channels x 144,000
frames for a 30-s MERT clip) in a blocked format and reorders it, and a GroupNorm and a GELU
then pass over the same full-size map. At bf16 on a CPU with AMX, these passes took half of
MERT-95M's time per clip, while the transformer's matrix products took a tenth of it.

Time-major (batch, time, channels), every layer is one matrix product over windows of the
previous layer's output. Where kernel equals stride, the windows are a view; otherwise, they
are one copy. The layer norm of data2vec runs over the contiguous channel axis.

The first layer of HuBERT/MERT has a GroupNorm with one group per channel, whose statistics
run over time. It folds into that layer's weights. The layer's output is linear in its
10-sample windows, so the per-channel mean and variance follow from the windows' mean
(10 values) and covariance (10 x 10), computed in float64. After the fold, every layer is
pointwise in time, given its input windows. Each runs in chunks of frames: matrix product,
norm, activation and cast. The full-size maps are never passed over again.

The result is the same function up to rounding. It replaces transformers' encoder only at the
reduced precisions, whose vectors have an embedding version of their own. At bf16 the
products of layers 1 to 6 run in bfloat16, with float32 accumulation. The first layer (ten
taps, which matrix units gain nothing on) and every norm stay float32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Output frames per matrix product: bounds the window copy (4096 x 1536 values) and keeps a
# chunk's output in cache for its norm and activation.
CHUNK_FRAMES = 4096


def windows(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """(B, T, C) -> (B, T', kernel * C): each output frame's input window, time step by time step.

    A view when the windows do not overlap (kernel == stride) and `x` is contiguous.
    """
    batch, frames, channels = x.shape
    if frames < kernel:
        raise RuntimeError(f"input of {frames} frames is shorter than the kernel ({kernel})")
    unfolded = x.unfold(1, kernel, stride)  # (B, T', C, k)
    return unfolded.transpose(2, 3).reshape(batch, unfolded.shape[1], kernel * channels)


class TimeMajorConvLayer(nn.Module):
    """One conv layer of the encoder: conv, then an optional norm, then the activation."""

    def __init__(
        self,
        conv: nn.Conv1d,
        norm: nn.Module | None,
        activation: nn.Module,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation != (1,) or conv.padding != (0,):
            raise ValueError("only plain strided convolutions are computed time-major")
        if isinstance(norm, nn.GroupNorm) and (norm.num_groups != norm.num_channels or conv.in_channels != 1):
            raise ValueError("a GroupNorm folds into the layer only with one group per channel on one input")
        self.kernel = conv.kernel_size[0]
        self.stride = conv.stride[0]
        self.out_channels = conv.out_channels
        # The first layer and every layer with a folded norm compute in float32 (see the notes).
        self.dtype = torch.float32 if isinstance(norm, nn.GroupNorm) or conv.in_channels == 1 else dtype
        # (out, in, k) -> (out, k * in): a window is k time steps of all channels.
        weight = conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("weight", weight.to(self.dtype).contiguous(), persistent=False)
        self.register_buffer("bias", bias.to(device=weight.device, dtype=self.dtype), persistent=False)
        self.norm = norm
        self.activation = activation

    def _folded_group_norm(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-clip weights (B, out, k) and biases (B, out) that include the GroupNorm."""
        norm = self.norm
        w64 = window.double()
        mean = w64.mean(dim=1)  # (B, k)
        centred = w64 - mean[:, None]
        covariance = centred.transpose(1, 2) @ centred / window.shape[1]  # (B, k, k)
        weight = self.weight.double()
        out_mean = mean @ weight.T + self.bias.double()  # (B, out)
        variance = torch.einsum("oi,bij,oj->bo", weight, covariance, weight).clamp_min(0)
        scale = norm.weight.double() * torch.rsqrt(variance + norm.eps)
        shift = norm.bias.double() - out_mean * scale
        return (weight * scale[:, :, None]).float(), (self.bias.double() * scale + shift).float()

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        window = windows(x.to(self.dtype), self.kernel, self.stride)
        batch, frames, _ = window.shape
        if isinstance(self.norm, nn.GroupNorm):
            weights, biases = self._folded_group_norm(window)
        else:
            weights = self.weight.expand(batch, *self.weight.shape)
            biases = self.bias.expand(batch, *self.bias.shape)
        out = torch.empty(batch, frames, self.out_channels, dtype=out_dtype, device=x.device)
        for row in range(batch):
            transposed = weights[row].T
            for start in range(0, frames, CHUNK_FRAMES):
                chunk = torch.addmm(biases[row], window[row, start : start + CHUNK_FRAMES], transposed)
                if isinstance(self.norm, nn.LayerNorm):
                    norm = self.norm
                    chunk = F.layer_norm(chunk.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
                out[row, start : start + CHUNK_FRAMES] = self.activation(chunk)
        return out


class TimeMajorFeatureEncoder(nn.Module):
    """Drop-in for transformers' HubertFeatureEncoder / Data2VecAudioFeatureEncoder at inference.

    Takes (B, samples) and returns (B, channels, frames) like them, as a transposed view of
    time-major data, so that the model's own transpose back to (B, frames, channels) is free.
    """

    def __init__(self, layers: list[TimeMajorConvLayer], dtype: torch.dtype) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dtype = dtype

    @classmethod
    def from_encoder(cls, encoder: nn.Module, dtype: torch.dtype = torch.float32) -> TimeMajorFeatureEncoder:
        layers = []
        for layer in encoder.conv_layers:
            norm = getattr(layer, "layer_norm", None)
            if norm is not None and not isinstance(norm, nn.GroupNorm | nn.LayerNorm):
                raise ValueError(f"unexpected norm {type(norm).__name__} in the feature encoder")
            layers.append(TimeMajorConvLayer(layer.conv, norm, layer.activation, dtype))
        return cls(layers, dtype)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden = input_values[:, :, None]
        # The dtypes are chosen per layer above; autocast would cast the float32 ones to bf16.
        with torch.autocast(input_values.device.type, enabled=False):
            for layer in self.layers:
                hidden = layer(hidden, self.dtype)
        return hidden.transpose(1, 2)


def use_time_major_feature_encoder(model: nn.Module, dtype: torch.dtype) -> bool:
    """Swap a wav2vec2-family model's conv feature encoder for the time-major one; False if none."""
    encoder = getattr(model, "feature_extractor", None)
    if encoder is None or not hasattr(encoder, "conv_layers"):
        return False
    model.feature_extractor = TimeMajorFeatureEncoder.from_encoder(encoder, dtype)
    return True
