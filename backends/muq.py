"""MuQ (Zhu et al. 2025), ``OpenMuQ/MuQ-large-msd-iter``: MusicFM's encoder design, last hidden state, mean.

The hub repository is what huggingface_hub's ``PyTorchModelHubMixin`` writes: ``config.json``
(MuQConfig: mel settings, ``stat`` with the mel mean/std, ``w2v2_config`` with a dump of the
conformer config) and ``model.safetensors`` whose tensors sit under ``model.`` (the inner
``MuQModel``). The ``muq`` package itself cannot be used here: it needs torchaudio and
torchvision builds that do not load next to our torch, and its EasyDict config and use of
``hidden_states`` break under transformers 5. So this module builds a proper
``Wav2Vec2ConformerConfig`` from ``w2v2_config`` and loads the encoder tensors strictly into
`backends._conformer.ConformerEncoderStack`; quantizer, RVQ and token-head tensors are skipped.

Decisions:

- Layer and pooling follow the paper's ``muq_emb.py``: ``last_hidden_state.mean(axis=1)``.
- ``label_rate`` sets the conv front end's time strides as upstream does (25 Hz: 2 and 2;
  50 Hz: 2 and 1).
- ``paper_compat`` zero-pads clips shorter than 30 s to 720 000 samples, as the paper's
  reader did; otherwise only the real audio is embedded.
- The MuQ-MuLan backend reuses `build_encoder` for its audio tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends import REGISTRY
from backends._conformer import (
    ConformerEncoderStack,
    ConformerFamilyBackend,
    conformer_config,
    load_matching,
    mel_stats,
    read_json,
    strip_prefix,
)
from backends._weights import find_file, load_state_dict, resolve_weights
from backends.base import BackendError

HUB_REPO = "OpenMuQ/MuQ-large-msd-iter"
PREFIX = "model."
TIME_STRIDES = {4: (2, 2), 2: (2, 1)}  # frames per token (100 Hz mel / label rate) -> conv time strides


def is_training_only(key: str) -> bool:
    """Tensors of MuQModel that embeddings never use: quantizers, RVQ, token head, cls token."""
    return key.startswith(("quantizer_", "rvq.", "linear.", "recon_proj.", "preprocessor_")) or key == "cls_token"


def build_encoder(config: dict[str, Any], *, config_path: Path) -> ConformerEncoderStack:
    """The MuQ encoder described by a MuQ config.json (weights not loaded yet)."""
    stats = config.get("stat")
    if not isinstance(stats, dict):
        raise BackendError(f"{config_path} has no 'stat' section: not a MuQ config", "fetch the MuQ weights again")
    mean, std = mel_stats(stats, config_path)
    w2v2 = config.get("w2v2_config")
    if not isinstance(w2v2, dict):
        raise BackendError(f"{config_path} has no 'w2v2_config' section: not a MuQ config", "fetch the weights again")
    try:
        encoder_dim = int(config.get("encoder_dim", 1024))
        encoder_depth = int(config.get("encoder_depth", 12))
        conv_dim = int(config.get("conv_dim", 512))
        n_mels = int(config.get("n_mels", 128))
        hop_length = int(config.get("hop_length", 240))
        label_rate = int(config.get("label_rate", 25))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"{config_path}: invalid MuQ setting ({exc})", "fetch the weights again") from None
    strides = TIME_STRIDES.get(100 // label_rate) if label_rate > 0 else None
    if strides is None:
        raise BackendError(f"{config_path}: label_rate {label_rate} is not one MuQ supports (25 or 50)")
    # MuQModel overrides these two fields of w2v2_config with its own settings.
    encoder_config = conformer_config(w2v2, hidden_size=encoder_dim, num_hidden_layers=encoder_depth)
    if encoder_dim % encoder_config.num_attention_heads:
        raise BackendError(f"{config_path}: encoder_dim {encoder_dim} does not split into attention heads")
    return ConformerEncoderStack(
        encoder_config,
        mel_mean=mean,
        mel_std=std,
        n_mels=n_mels,
        conv_channels=conv_dim,
        time_strides=strides,
        hop_length=hop_length,
    )


class MuQBackend(ConformerFamilyBackend):
    spec = REGISTRY["muq"]
    hub_repo = HUB_REPO
    hub_files = ("config.json", "model.safetensors")
    layer = -1  # MuQ.forward: last_hidden_state = hidden_states[-1]

    def load(self, weights: str | Path | None = None) -> MuQBackend:
        folder = resolve_weights(self.spec, weights)
        config_path = folder / "config.json"
        config = read_json(config_path, "MuQ config")
        if "audio_model" in config or "mulan" in config:
            raise BackendError(f"{config_path} belongs to MuQ-MuLan, not MuQ", "use --backend muq_mulan for it")
        checkpoint = find_file(folder, "model.safetensors")
        tensors = load_state_dict(checkpoint)
        if any(k.startswith("mulan.") for k in tensors):
            raise BackendError(f"{checkpoint} is a MuQ-MuLan checkpoint, not MuQ", "use --backend muq_mulan for it")
        model = build_encoder(config, config_path=config_path)
        load_matching(model, strip_prefix(tensors, PREFIX), file=checkpoint, what="MuQ", ignored=is_training_only)
        self.model = model
        self._use_device()
        self.loaded = True
        return self
