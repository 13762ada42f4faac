"""MuQ-MuLan (Zhu et al. 2025), ``OpenMuQ/MuQ-MuLan-large``: the audio tower's normalised latent, mean over 10-s clips.

MuQ-MuLan is a joint music-text model. Only its audio tower is built here: a MuQ encoder
(fine-tuned jointly, so its weights come from the MuLan file, not from MuQ's repository) ->
Linear 1024 -> 768 -> an 8-layer pre-norm transformer (bias-free LayerNorm, L2-normalised
queries and keys with learned per-dimension scales and a fixed scale of 8, GEGLU feed-forward,
no positional encoding, no final norm) -> mean over time -> Linear 768 -> 512 -> L2
normalisation. A track is cut into 10-s clips and the clip latents are averaged (not
re-normalised), as ``MuQMuLan.extract_audio_latents`` does.

Files: the hub repository holds ``config.json`` (MuQMuLanConfig) and ``model.safetensors``
(audio tower under ``mulan.audio.``, its projection under ``mulan.audio_to_latents.``, text
tower under ``mulan.text.``). The audio tower's MuQ was constructed from the config of
``OpenMuQ/MuQ-large-msd-iter`` (mel statistics and conformer settings that the MuLan config
does not repeat), so ``fetch`` stores that file beside the others as ``muq_config.json``.
Only the audio tensors are read from the safetensors file (it is opened lazily); the
text tower (XLM-RoBERTa) is never built or downloaded.

Decisions and where upstream and the paper disagree:

- The paper's ``muq_emb.py`` calls the MuLan model with ``output_hidden_states=False`` and
  reads ``.last_hidden_state``, which ``MuQMuLan.forward`` cannot accept; the only call that
  runs returns the clip-averaged latent, which is what this backend computes.
- A final partial clip is filled with audio from the track's start (upstream). For a track
  shorter than one clip upstream's slice yields a clip of twice the track's length; here the
  track is repeated until the clip is full, so every clip has the same length and batches.
- ``paper_compat`` zero-pads tracks shorter than 30 s to 30 s before cutting clips, as the
  paper's reader did.
- Clips of all tracks in a batch run through the model together; every clip has the same
  length, so batched and single results agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends import REGISTRY, weights_dir
from backends._conformer import (
    GPU_BATCH_SIZE,
    N_FFT,
    ConformerEncoderStack,
    autocast_for,
    load_matching,
    pad_waveforms,
    read_json,
)
from backends._weights import fetch_from_hub, find_file, install_from_folder, pick_device, resolve_weights
from backends.base import BackendError, MeanPooledBackend, WeightsMissing
from backends.muq import HUB_REPO as MUQ_REPO
from backends.muq import build_encoder, is_training_only

HUB_REPO = "OpenMuQ/MuQ-MuLan-large"
MUQ_CONFIG = "muq_config.json"
AUDIO_PREFIXES = ("mulan.audio.", "mulan.audio_to_latents.")


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm with a learned gain and a fixed zero bias (upstream's `LayerNorm`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.learned_gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.learned_gamma, self.beta)


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * values


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    # Index positions (0 norm, 1 in, 4 out) are part of the checkpoint's tensor names.
    hidden = int(dim * mult * 2 / 3)
    return nn.Sequential(
        BiasFreeLayerNorm(dim),
        nn.Linear(dim, hidden * 2, bias=False),
        GEGLU(),
        nn.Dropout(0.0),
        nn.Linear(hidden, dim, bias=False),
    )


class CosineAttention(nn.Module):
    """Pre-norm self-attention over L2-normalised queries and keys, scaled by learned gains and 8."""

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0):
        super().__init__()
        self.heads = heads
        self.scale = scale
        inner = heads * dim_head
        self.norm = BiasFreeLayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        queries = self.to_q(x)
        keys, values = self.to_kv(x).chunk(2, dim=-1)
        queries, keys, values = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (queries, keys, values))
        queries = F.normalize(queries, dim=-1) * self.q_scale
        keys = F.normalize(keys, dim=-1) * self.k_scale
        out = F.scaled_dot_product_attention(queries, keys, values.to(queries.dtype), scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class MuLanTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([CosineAttention(dim, heads, dim_head), feed_forward(dim, ff_mult)]) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, ffn in self.layers:
            x = attention(x) + x
            x = ffn(x) + x
        return x


class _MuQShell(nn.Module):
    """Stands for upstream's `MuQ` wrapper so tensor names keep its `model.` level."""

    def __init__(self, encoder: ConformerEncoderStack):
        super().__init__()
        self.model = encoder


class MuLanAudioTower(nn.Module):
    def __init__(
        self, encoder: ConformerEncoderStack, *, dim: int, depth: int, heads: int, dim_head: int, ff_mult: int
    ):
        super().__init__()
        self.model = _MuQShell(encoder)
        self.proj = nn.Linear(encoder.hidden_size, dim)
        self.transformer = MuLanTransformer(dim, depth, heads, dim_head, ff_mult)


class MuLanAudio(nn.Module):
    """Audio half of MuLanModel; `state_dict()` names equal the checkpoint's minus "mulan."."""

    def __init__(self, tower: MuLanAudioTower, dim_latent: int, encoder_layer: int = -1):
        super().__init__()
        self.audio = tower
        self.audio_to_latents = nn.Linear(tower.proj.out_features, dim_latent)
        self.encoder_layer = encoder_layer

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        hidden = self.audio.model.model.encode(clips, self.encoder_layer)
        pooled = self.audio.transformer(self.audio.proj(hidden)).mean(dim=-2)
        return F.normalize(self.audio_to_latents(pooled).float(), p=2, dim=-1)


def split_clips(wave: np.ndarray, clip_samples: int) -> np.ndarray:
    """(n_clips, clip_samples): consecutive clips, the last one completed with audio from the start."""
    if len(wave) == 0:
        return np.zeros((1, clip_samples), np.float32)
    if len(wave) < clip_samples:
        return np.resize(wave, clip_samples)[None, :]
    full = len(wave) // clip_samples
    clips = [wave[i * clip_samples : (i + 1) * clip_samples] for i in range(full)]
    rest = len(wave) - full * clip_samples
    if rest:
        clips.append(np.concatenate([wave[full * clip_samples :], wave[: clip_samples - rest]]))
    return np.stack(clips)


def _audio_tensor_is_ignored(key: str) -> bool:
    if key.startswith("audio.aggregator."):  # built upstream, never used in forward
        return True
    return key.startswith("audio.model.model.") and is_training_only(key[len("audio.model.model.") :])


def read_audio_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Only the audio tower's tensors of a MuLan safetensors file, names without "mulan."."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = [k for k in handle.keys() if k.startswith(AUDIO_PREFIXES)]  # noqa: SIM118 - not a dict
            tensors = {k[len("mulan.") :]: handle.get_tensor(k) for k in keys}
    except (SafetensorError, OSError) as exc:
        raise BackendError(f"{path}: not a readable safetensors file ({exc})", "fetch the weights again") from exc
    if not tensors:
        raise BackendError(
            f"{path} is not a MuQ-MuLan checkpoint (no mulan.audio tensors)",
            "give the folder of huggingface.co/OpenMuQ/MuQ-MuLan-large, or run: mrs-tui backends fetch muq_mulan",
        )
    return tensors


class MuQMuLanBackend(MeanPooledBackend):
    spec = REGISTRY["muq_mulan"]
    batch_size: ClassVar[int | None] = 2

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.model: MuLanAudio | None = None
        self.torch_device: torch.device | None = None
        self.clip_samples = int(10 * self.spec.sample_rate)

    @property
    def dim(self) -> int:
        return self.model.audio_to_latents.out_features if self.model is not None else self.spec.dim

    def load(self, weights: str | Path | None = None) -> MuQMuLanBackend:
        folder = resolve_weights(self.spec, weights)
        config_path = folder / "config.json"
        config = read_json(config_path, "MuQ-MuLan config")
        if "mulan" not in config or "audio_model" not in config:
            hint = " (it looks like MuQ's: use --backend muq for it)" if "w2v2_config" in config else ""
            raise BackendError(f"{config_path} is not a MuQ-MuLan config{hint}", "fetch the MuQ-MuLan weights again")
        muq_config_path = folder / MUQ_CONFIG
        muq_config = read_json(muq_config_path, "MuQ config")
        checkpoint = find_file(folder, "model.safetensors")
        tensors = read_audio_tensors(checkpoint)
        self.model = build_audio_model(config, muq_config, config_path=config_path, muq_config_path=muq_config_path)
        load_matching(self.model, tensors, file=checkpoint, what="MuQ-MuLan audio", ignored=_audio_tensor_is_ignored)
        self.clip_samples = int(round(float(config["mulan"].get("clip_secs", 10)) * self.sample_rate))
        self.torch_device = pick_device(self.device)
        self.model.to(self.torch_device).eval()
        if self.torch_device.type == "cuda":
            self.batch_size = GPU_BATCH_SIZE
        self.loaded = True
        return self

    def frame_sets(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per track, the (n_clips, dim) L2-normalised latents of its clips."""
        self._require_loaded()
        pad_to = int(self.spec.clip_seconds * self.sample_rate) if self.paper_compat else None
        prepared = pad_waveforms(waveforms, min_samples=min(N_FFT, self.clip_samples), pad_to=pad_to)
        per_track = [split_clips(wave, self.clip_samples) for wave in prepared]
        all_clips = np.concatenate(per_track)
        # One forward pass takes `batch_size` tracks' worth of clips (three per 30-s track).
        clips_per_track = max(1, int(np.ceil(self.spec.clip_seconds * self.sample_rate / self.clip_samples)))
        per_pass = max(1, self.batch_size or 2) * clips_per_track
        latents = []
        with torch.inference_mode():
            for start in range(0, len(all_clips), per_pass):
                batch = torch.from_numpy(all_clips[start : start + per_pass]).to(self.torch_device)
                with autocast_for(self.torch_device):
                    latents.append(self.model(batch).float().cpu())
        stacked = torch.cat(latents)
        bounds = np.cumsum([0] + [len(c) for c in per_track])
        return [stacked[bounds[i] : bounds[i + 1]] for i in range(len(per_track))]

    @classmethod
    def download(cls, *, revision: str | None, allow_pickle: bool, **options: object) -> Path:
        target = fetch_from_hub(cls.spec, MUQ_REPO, ["config.json"])
        (target / "config.json").replace(target / MUQ_CONFIG)
        return fetch_from_hub(cls.spec, HUB_REPO, ["config.json", "model.safetensors"], revision=revision)

    @classmethod
    def install_from(cls, source: str | Path, *, allow_pickle: bool) -> Path:
        folder = Path(source).expanduser()
        if (folder / MUQ_CONFIG).is_file():
            return install_from_folder(cls.spec, folder)
        # The hub repository itself has no muq_config.json: take MuQ's config from the MuQ backend or the hub.
        target = install_from_folder(replace(cls.spec, weights_files=("config.json", "model.safetensors")), folder)
        installed_muq = weights_dir("muq") / "config.json"
        if installed_muq.is_file():
            (target / MUQ_CONFIG).write_bytes(installed_muq.read_bytes())
            return target
        keep = (target / "config.json").read_bytes()
        try:
            fetch_from_hub(cls.spec, MUQ_REPO, ["config.json"])
        except WeightsMissing as exc:
            (target / "config.json").write_bytes(keep)
            raise WeightsMissing(
                f"{folder} lacks {MUQ_CONFIG} (the config.json of {MUQ_REPO}) and it cannot be downloaded",
                f"save that file into the folder as {MUQ_CONFIG} and run the fetch again",
            ) from exc
        (target / "config.json").replace(target / MUQ_CONFIG)
        (target / "config.json").write_bytes(keep)
        return target


def build_audio_model(
    config: dict[str, Any],
    muq_config: dict[str, Any],
    *,
    config_path: Path,
    muq_config_path: Path | None = None,
) -> MuLanAudio:
    """The audio half of MuLan described by the two configs (weights not loaded yet)."""
    mulan, audio_model = config.get("mulan") or {}, config.get("audio_model") or {}
    transformer = config.get("audio_transformer") or {}
    name = str(audio_model.get("name", MUQ_REPO))
    if "muq" not in name.lower():
        raise BackendError(f"{config_path}: the audio tower is {name!r}; only MuQ-based MuLan models are supported")
    try:
        if int(mulan.get("sr", 24000)) != 24000:
            raise BackendError(f"{config_path}: sample rate {mulan['sr']} is not MuQ's 24000 Hz")
        encoder = build_encoder(muq_config, config_path=muq_config_path or config_path.with_name(MUQ_CONFIG))
        model_dim = int(audio_model.get("model_dim") or encoder.hidden_size)
        if model_dim != encoder.hidden_size:
            raise BackendError(
                f"{config_path}: audio model width {model_dim} differs from the MuQ config's {encoder.hidden_size}",
                f"{MUQ_CONFIG} must be the config.json of {MUQ_REPO}",
            )
        tower = MuLanAudioTower(
            encoder,
            dim=int(transformer.get("dim", 768)),
            depth=int(transformer.get("tf_depth", 8)),
            heads=int(transformer.get("heads", 8)),
            dim_head=int(transformer.get("dim_head", 64)),
            ff_mult=int(transformer.get("ff_mult", 4)),
        )
        return MuLanAudio(tower, int(mulan.get("dim_latent", 512)), int(audio_model.get("use_layer_idx", -1)))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"{config_path}: invalid MuQ-MuLan setting ({exc})", "fetch the weights again") from None
