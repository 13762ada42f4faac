"""EncodecMAE `base` (Pepino, Riera & Ferrer 2023), re-implemented in plain PyTorch.

The paper extracted features with the v1 API of `habla-liaa/encodecmae`
(``load_model('base')`` -> hub repo ``lpepino/encodecmae-base``: ``model.pt``, ``config.gin``,
``imports``). That code needs the `encodec` package, which imports torchaudio (unusable next
to our torch), plus pytorch-lightning and gin; so this module rebuilds the inference path
and keeps the upstream *weight names*, so the published ``model.pt`` loads as it is.

What runs, per 4-s chunk of 24 kHz audio (upstream ``extract_features_from_array``):

1. EnCodec's 24 kHz SEANet encoder (causal, weight-normed convolutions with reflect padding,
   strides 2-4-5-8 = hop 320, a 2-layer LSTM with a skip, 128-d output) -> 75 frames/s.
2. ``feat_projector`` Linear 128 -> 768, plus sinusoidal positions times a learned scalar
   (``positional_encoder.scale``).
3. The 10-layer "ResiDual" transformer encoder: every layer feeds a post-LN stream *and* an
   un-normalised stream; the output is ``post_ln + final_norm(raw)``. Attention has no biases
   and splits features into heads the unusual way (``view(N, T, head_dim, heads)``, so head h
   takes features h, h+H, h+2H, ...), and **one** feed-forward block (768 -> 4096 -> 768,
   ReLU) is shared by all ten layers: the checkpoint repeats its tensors under every layer's
   name, and we check the copies agree.
4. The chunks' frames are concatenated (30 s -> 2250 frames) and averaged -> 768.

Decisions and where code and paper differ:

- Chunks are independent, so we batch chunks of equal length across clips; results equal a
  one-clip run within float rounding. A trailing partial chunk is kept, with its last frame
  masked as a key exactly like upstream (``wav_lens // 320`` valid frames), so a 30-s clip
  gives the same 2250 frames as the authors' code.
- The paper passed whole Music4All files, which are 30-s previews; we cut the same 30 s
  (``clip_seconds``) from longer tracks. No amplitude normalisation (upstream uses
  ``librosa.load`` as is).
- The target quantizer, decoder and prediction head are only used in pre-training: their
  tensors are accepted in the checkpoint and ignored. Any other unexpected tensor, or a
  missing one, means the file is not an EncodecMAE checkpoint and loading stops.
- The number of attention heads is not visible in tensor shapes: it is read from the
  ``config.gin`` shipped beside ``model.pt`` (``NUM_ENCODER_HEADS``), else assumed to be
  ``model_dim // 64`` (12 for `base`).
- ``model.pt`` is a torch pickle (a Lightning-style ``{'state_dict': ...}``). It is read with
  ``weights_only=True``; ``fetch`` converts it to ``model.safetensors`` so later loads never
  unpickle. If the pickle needs more than tensors, only ``fetch --allow-pickle`` reads it.
- GPU: the model runs in float32 even on CUDA. It is small (about 38 M parameters on this
  path), so half precision would save little, and the ResiDual raw stream is summed over all
  layers without normalisation, which is where float16 overflows first.
- The real ``model.pt`` key list could not be checked from here (no hub access); the names
  follow the v1 source (``tasks/models/encodecmae``, ``tasks/models/transformers``) and
  ``encodec`` 0.1.1's ``SEANetEncoder``. The SEANet encoder is transformers' own
  (``transformers.models.encodec``'s ``EncodecEncoder``, the same causal, reflect-padded,
  weight-normed layers), and upstream's tensor names are mapped onto it when the file is read
  (`from_upstream_key`), so the published file loads unchanged and ``fetch`` stores upstream's
  names. The transformer is tested against the upstream formulas written out explicitly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends import REGISTRY
from backends._weights import (
    find_file,
    load_state_dict,
    pick_device,
    resolve_weights,
)
from backends.base import BackendError, MeanPooledBackend

HUB_REPO = "lpepino/encodecmae-base"
HUB_FILES = ("model.pt", "config.gin", "imports")
SAMPLE_RATE = 24000
CHUNK_SAMPLES = 4 * SAMPLE_RATE
# Chunks pushed through the model at once: 8 x 4 s keeps peak memory near 1 GB at real size
# on a CPU; a GPU takes more at a time.
CHUNKS_PER_BATCH = 8
CHUNKS_PER_BATCH_GPU = 32
# Upstream adds this to masked attention scores instead of using -inf; kept for parity.
MASK_VALUE = -1e9
# Modules of the training model that feature extraction never runs.
UNUSED_PREFIXES = ("target_encoder.", "decoder.", "decoder_projector.", "head.", "extra_head.")


@dataclass(frozen=True)
class EncodecMAEConfig:
    """Architecture sizes of the feature path; `base` is the default."""

    n_filters: int = 32
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # EnCodec decoder order; the encoder uses them reversed
    latent_dim: int = 128
    lstm_layers: int = 2
    model_dim: int = 768
    num_layers: int = 10
    num_heads: int = 12
    ff_dim: int = 4096
    encoder_scale: float = 1.0  # EncodecEncoder(scale=...), 1.0 in every published config

    @property
    def hop(self) -> int:
        return int(np.prod(self.ratios))


# --- EnCodec SEANet encoder ------------------------------------------------------------------


def seanet_config(cfg: EncodecMAEConfig):
    """transformers' EncodecConfig of the 24 kHz model's encoder with `cfg`'s widths."""
    from transformers import EncodecConfig

    return EncodecConfig(
        audio_channels=1,
        num_filters=cfg.n_filters,
        upsampling_ratios=list(cfg.ratios),
        hidden_size=cfg.latent_dim,
        num_lstm_layers=cfg.lstm_layers,
        num_residual_layers=1,
        kernel_size=7,
        last_kernel_size=7,
        residual_kernel_size=3,
        dilation_growth_rate=2,
        compress=2,
        norm_type="weight_norm",
        use_causal_conv=True,
        pad_mode="reflect",
        use_conv_shortcut=True,
    )


class _WavEncoder(nn.Module):
    # Upstream EncodecEncoder wraps the SEANet encoder as `.model`; see `from_upstream_key` for the names.
    def __init__(self, cfg: EncodecMAEConfig):
        from transformers.models.encodec.modeling_encodec import EncodecEncoder

        super().__init__()
        self.model = EncodecEncoder(seanet_config(cfg))
        self.scale = cfg.encoder_scale

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav.unsqueeze(1)).permute(0, 2, 1) * self.scale


# encodec's SEANetEncoder keeps its layers in `model` and each conv two levels down
# (SConv1d.conv.conv, weight-normed as weight_g / weight_v); transformers' in `layers`, one level
# down, with torch's weight-norm parametrisation.
_UPSTREAM_SEANET = re.compile(r"^wav_encoder\.model\.model\.(\d+)\.(.+)$")
_OUR_SEANET = re.compile(r"^wav_encoder\.model\.layers\.(\d+)\.(.+)$")
_WEIGHT_NORM = (
    ("conv.weight_g", "conv.parametrizations.weight.original0"),
    ("conv.weight_v", "conv.parametrizations.weight.original1"),
)


def from_upstream_key(key: str) -> str:
    """The name in `EncodecMAEModel` of a tensor named `key` in upstream's model.pt."""
    match = _UPSTREAM_SEANET.match(key)
    if not match:
        return key
    rest = match.group(2).replace("conv.conv.", "conv.")
    for upstream, ours in _WEIGHT_NORM:
        rest = rest.replace(upstream, ours)
    return f"wav_encoder.model.layers.{match.group(1)}.{rest}"


def to_upstream_key(key: str) -> str:
    """The inverse of `from_upstream_key`."""
    match = _OUR_SEANET.match(key)
    if not match:
        return key
    rest = match.group(2)
    for upstream, ours in _WEIGHT_NORM:
        rest = rest.replace(ours, upstream)
    rest = re.sub(r"(^|\.)conv\.(weight_g|weight_v|bias)$", r"\1conv.conv.\2", rest)
    return f"wav_encoder.model.model.{match.group(1)}.{rest}"


def upstream_state_dict(model: nn.Module) -> dict:
    """`model`'s tensors under upstream's names."""
    return {to_upstream_key(k): v for k, v in model.state_dict().items()}


# --- ResiDual transformer --------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise BackendError(f"EncodecMAE: model width {dim} is not divisible by {heads} heads", "check config.gin")
        self.heads, self.head_dim = heads, dim // heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        # Features are laid out (head_dim, heads), not (heads, head_dim): upstream's view order.
        return x.view(n, t, self.head_dim, self.heads).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self._split(self.wq(x)), self._split(self.wk(x)), self._split(self.wv(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.wo(out.permute(0, 2, 3, 1).reshape(n, t, self.head_dim * self.heads))


class _ResiDualLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_layer: nn.Module):
        super().__init__()
        self.att_layer = _Attention(dim, heads)
        self.ff_layer = ff_layer  # the same module object in every layer
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, normed: torch.Tensor, raw: torch.Tensor, bias: torch.Tensor | None):
        att = self.att_layer(normed, bias)
        normed = self.norm1(normed + att)
        raw = raw + att
        ff = self.ff_layer(normed)
        return self.norm2(normed + ff), raw + ff


class ResiDualEncoder(nn.Module):
    def __init__(self, cfg: EncodecMAEConfig, num_layers: int):
        super().__init__()
        shared_ff = nn.Sequential(nn.Linear(cfg.model_dim, cfg.ff_dim), nn.ReLU(), nn.Linear(cfg.ff_dim, cfg.model_dim))
        self.encoder_layers = nn.ModuleList(
            _ResiDualLayer(cfg.model_dim, cfg.num_heads, shared_ff) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.model_dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        normed, raw = x, x
        for layer in self.encoder_layers:
            normed, raw = layer(normed, raw, bias)
        return normed + self.final_norm(raw)


class _SinusoidalPositions(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, t, d = x.shape
        position = torch.arange(t, device=x.device, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d, 2, device=x.device, dtype=torch.float32) * -(math.log(10000.0) / d))
        pe = torch.zeros(t, d, device=x.device, dtype=torch.float32)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        return x + self.scale * pe.to(x.dtype)


class EncodecMAEModel(nn.Module):
    """The feature-extraction path of upstream `EncodecMAE` (``forward_finetune`` without masking)."""

    def __init__(self, cfg: EncodecMAEConfig):
        super().__init__()
        self.cfg = cfg
        self.wav_encoder = _WavEncoder(cfg)
        self.feat_projector = nn.Linear(cfg.latent_dim, cfg.model_dim)
        self.positional_encoder = _SinusoidalPositions()
        self.visible_encoder = ResiDualEncoder(cfg, cfg.num_layers)

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """(B, samples) equal-length chunks -> (B, ceil(samples / hop), model_dim) frames."""
        x = self.positional_encoder(self.feat_projector(self.wav_encoder(chunks)))
        valid = chunks.shape[-1] // self.cfg.hop
        bias = None
        if valid < x.shape[1]:  # the last frame of a partial chunk covers padding: mask it as a key
            bias = torch.zeros(1, 1, 1, x.shape[1], device=x.device, dtype=x.dtype)
            bias[..., valid:] = MASK_VALUE
        return self.visible_encoder(x, bias)


# --- checkpoint handling ---------------------------------------------------------------------


def _normalise_keys(state: dict) -> dict:
    """Accept weight-norm tensors saved under torch's newer parametrization names too."""
    out = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        out[key] = value
    return out


def _gin_int(text: str, patterns: Sequence[str]) -> int | None:
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.MULTILINE)
        if match:
            return int(match.group(1))
    return None


def _config_from_state(state: dict, gin_text: str, source: Path) -> EncodecMAEConfig:
    """Architecture sizes read off the tensor shapes (and the head count off config.gin)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise BackendError(
                f"{source}: not an EncodecMAE checkpoint (no tensor {key!r})",
                "fetch the weights again with: mrs-tui backends fetch encodecmae",
            )
        return tuple(state[key].shape)

    n_filters = shape("wav_encoder.model.model.0.conv.conv.weight_v")[0]
    latent_dim = shape("feat_projector.weight")[1]
    model_dim = shape("feat_projector.weight")[0]
    ff_dim = shape("visible_encoder.encoder_layers.0.ff_layer.0.weight")[0]
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"visible_encoder\.encoder_layers\.(\d+)\.", k))}
    lstm_layers = len([k for k in state if re.match(r"wav_encoder\.model\.model\.\d+\.lstm\.weight_ih_l\d+$", k)])
    heads = _gin_int(
        gin_text,
        [
            r"^\s*NUM_ENCODER_HEADS\s*=\s*(\d+)",
            r"^\s*encoder/[\w.]*MultiHeadAttention\.num_heads\s*=\s*(\d+)",
        ],
    )
    scale = re.search(r"^\s*[\w./]*EncodecEncoder\.scale\s*=\s*([0-9.eE+-]+)", gin_text, flags=re.MULTILINE)
    return replace(
        EncodecMAEConfig(),
        n_filters=n_filters,
        latent_dim=latent_dim,
        lstm_layers=lstm_layers,
        model_dim=model_dim,
        num_layers=len(layer_ids),
        num_heads=heads or max(1, model_dim // 64),
        ff_dim=ff_dim,
        encoder_scale=float(scale.group(1)) if scale else 1.0,
    )


def _extract_state(raw: object, source: Path) -> dict:
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise BackendError(
            f"{source}: not an EncodecMAE checkpoint (expected a dict of tensors under 'state_dict')",
            "fetch the weights again with: mrs-tui backends fetch encodecmae",
        )
    return _normalise_keys(raw)


def _check_shared_ff(state: dict, source: Path) -> None:
    first_layer = "visible_encoder.encoder_layers.0.ff_layer."
    first = {k[len(first_layer) :]: v for k, v in state.items() if k.startswith(first_layer)}
    for key, value in state.items():
        match = re.match(r"visible_encoder\.encoder_layers\.\d+\.ff_layer\.(.+)$", key)
        if not match:
            continue
        reference = first.get(match.group(1))
        if reference is None or reference.shape != value.shape or not torch.equal(reference, value):
            raise BackendError(
                f"{source}: feed-forward weights differ between layers ({key})",
                "EncodecMAE shares one feed-forward block across layers; this is another model's checkpoint",
            )


def _convert_to_safetensors(folder: Path, *, allow_pickle: bool) -> Path:
    """Rewrite model.pt as model.safetensors (tensors only), so loading never unpickles."""
    from safetensors.torch import save_file

    source = folder / "model.pt"
    state = _extract_state(load_state_dict(source, allow_pickle=allow_pickle), source)
    target = folder / "model.safetensors"
    # safetensors refuses shared storage (the shared feed-forward block): store copies.
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(target))
    source.unlink()
    return target


# --- the backend -----------------------------------------------------------------------------


class EncodecMAEBackend(MeanPooledBackend):
    spec = REGISTRY["encodecmae"]
    hub_repo = HUB_REPO
    hub_files = HUB_FILES
    batch_size: ClassVar[int | None] = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model: EncodecMAEModel | None = None
        self._device = None
        self._chunks_per_batch = CHUNKS_PER_BATCH

    @property
    def dim(self) -> int:
        return self.model.cfg.model_dim if self.model is not None else self.spec.dim

    @classmethod
    def after_fetch(cls, folder: Path, *, allow_pickle: bool) -> Path:
        if (folder / "model.pt").is_file():
            try:
                _convert_to_safetensors(folder, allow_pickle=allow_pickle)
            except BackendError:
                # Leave no half-installed pickle behind that would make the backend look ready.
                (folder / "model.pt").unlink(missing_ok=True)
                raise
        return folder

    def load(self, weights: str | Path | None = None) -> EncodecMAEBackend:
        folder = resolve_weights(self.spec, weights)
        path = find_file(folder, "model.safetensors|model.pt")
        if weights is not None and Path(weights).is_file():
            path = Path(weights)
        try:
            raw = load_state_dict(path, allow_pickle=False)
        except BackendError as exc:
            if "Python objects" not in exc.problem:
                raise
            raise BackendError(
                exc.problem,
                f"convert it once, if you trust it: mrs-tui backends fetch encodecmae --from {folder} --allow-pickle",
            ) from exc
        state = _extract_state(raw, path)
        gin = folder / "config.gin"
        cfg = _config_from_state(state, gin.read_text(errors="replace") if gin.is_file() else "", path)
        _check_shared_ff(state, path)
        model = EncodecMAEModel(cfg)
        expected = set(model.state_dict())
        state = {from_upstream_key(k): v for k, v in state.items()}
        missing = sorted(to_upstream_key(k) for k in expected - set(state))
        unexpected = sorted(to_upstream_key(k) for k in set(state) - expected if not k.startswith(UNUSED_PREFIXES))
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise BackendError(
                f"{path}: not an EncodecMAE base checkpoint ({detail})",
                "fetch the weights again with: mrs-tui backends fetch encodecmae",
            )
        try:
            model.load_state_dict({k: state[k] for k in expected}, strict=True)
        except RuntimeError as exc:
            raise BackendError(
                f"{path}: tensor shapes do not fit EncodecMAE ({str(exc).splitlines()[-1].strip()[:160]})",
                "fetch the weights again with: mrs-tui backends fetch encodecmae",
            ) from exc
        self._device = pick_device(self.device)
        self._chunks_per_batch = CHUNKS_PER_BATCH_GPU if self._device.type == "cuda" else CHUNKS_PER_BATCH
        self.model = model.to(self._device).eval()
        self.loaded = True
        return self

    # -- inference --

    def frame_sets(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per waveform, the (frames, dim) output of all its 4-s chunks, in order."""
        self._require_loaded()
        chunks: list[tuple[int, int, np.ndarray]] = []  # (waveform index, chunk index, samples)
        for index, wave in enumerate(waveforms):
            wave = np.asarray(wave, dtype=np.float32).reshape(-1)
            if wave.size == 0:
                raise BackendError("EncodecMAE got an empty waveform", "the track has no audio to analyse")
            for start in range(0, wave.size, CHUNK_SAMPLES):
                chunks.append((index, start // CHUNK_SAMPLES, wave[start : start + CHUNK_SAMPLES]))
        by_length: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for item in chunks:
            by_length.setdefault(item[2].size, []).append(item)
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        with torch.inference_mode():
            for group in by_length.values():
                for start in range(0, len(group), self._chunks_per_batch):
                    part = group[start : start + self._chunks_per_batch]
                    batch = torch.from_numpy(np.stack([c[2] for c in part])).to(self._device)
                    frames = self.model(batch).float().cpu()
                    for (index, chunk, _), out in zip(part, frames, strict=True):
                        outputs[(index, chunk)] = out
        return [
            torch.cat([outputs[(i, c)] for c in range(math.ceil(np.asarray(w).size / CHUNK_SAMPLES))])
            for i, w in enumerate(waveforms)
        ]
