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

import json
from pathlib import Path
from typing import Any

import torch

from backends import REGISTRY
from backends._conformer import (
    ConformerEncoderStack,
    ConformerFamilyBackend,
    conformer_config,
    load_matching,
    mel_stats,
    perturb_for_tests_,
    read_json,
    strip_prefix,
)
from backends._weights import find_file, load_state_dict, resolve_weights
from backends.base import BackendError

HUB_REPO = "OpenMuQ/MuQ-large-msd-iter"
PREFIX = "model."
TIME_STRIDES = {4: (2, 2), 2: (2, 1)}  # frames per token (100 Hz mel / label rate) -> conv time strides

SIZES = {
    "real": {"encoder_dim": 1024, "encoder_depth": 12, "conv_dim": 512, "intermediate_size": 4096, "heads": 16},
    "tiny": {"encoder_dim": 64, "encoder_depth": 2, "conv_dim": 8, "intermediate_size": 128, "heads": 4},
}


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


def random_config(size: str) -> dict[str, Any]:
    """A MuQConfig dict as ``PyTorchModelHubMixin`` saves it, with the real model's settings at "real"."""
    sizes = SIZES[size]
    w2v2 = conformer_config(
        hidden_size=sizes["encoder_dim"],
        num_hidden_layers=sizes["encoder_depth"],
        intermediate_size=sizes["intermediate_size"],
        num_attention_heads=sizes["heads"],
    ).to_dict()
    # The dump upstream stored came from transformers 4 and carries file-level keys too.
    w2v2.pop("dtype", None)
    w2v2.update(
        {
            "architectures": ["Wav2Vec2ConformerForCTC"],
            "model_type": "wav2vec2-conformer",
            "transformers_version": "4.42.4",
            "torch_dtype": "float32",
            "gradient_checkpointing": False,
            "hidden_dropout_prob": 0.1,
        }
    )
    return {
        "label_rate": 25,
        "num_codebooks": 1,
        "codebook_dim": 16,
        "codebook_size": 4096,
        "features": ["melspec_2048"],
        "hop_length": 240,
        "n_mels": 128,
        "conv_dim": sizes["conv_dim"],
        "encoder_dim": sizes["encoder_dim"],
        "encoder_depth": sizes["encoder_depth"],
        "mask_hop": 0.4,
        "mask_prob": 0.6,
        "is_flash": False,
        "stat": {
            "melspec_2048_cnt": 14282760192,
            "melspec_2048_mean": 6.768444971712967,
            "melspec_2048_std": 18.417922652295623,
        },
        "w2v2_config": w2v2,
        "use_rvq_target": False,
        "use_vq_target": False,
        "use_encodec_target": False,
        "rvq_ckpt_path": None,
        "recon_loss_ratio": None,
        "resume_checkpoint": None,
        "rvq_n_codebooks": 8,
        "rvq_multi_layer_num": 1,
    }


def random_encoder_state(config: dict[str, Any], *, seed: int) -> dict[str, torch.Tensor]:
    """Random MuQModel tensors (names relative to MuQModel), including the training-only ones."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_encoder(config, config_path=Path("config.json"))
        generator = torch.Generator().manual_seed(seed)
        perturb_for_tests_(model, generator)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        hidden, codebook = config["encoder_dim"], config["codebook_size"]
        state["linear.weight"] = torch.randn(codebook, hidden, generator=generator) * 0.02
        state["linear.bias"] = torch.zeros(codebook)
        state["cls_token"] = torch.randn(hidden, generator=generator)
        state["quantizer_melspec_2048.random_projection"] = torch.randn(512, 16, generator=generator)
        state["quantizer_melspec_2048.codebook"] = torch.randn(codebook, 16, generator=generator)
    return state


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

    @classmethod
    def write_random_checkpoint(cls, folder: str | Path, *, size: str = "tiny", seed: int = 0) -> Path:
        """A random MuQ in the hub layout: config.json + model.safetensors with "model." names."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = random_config(size)
        state = random_encoder_state(config, seed=seed)
        save_file({PREFIX + k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return folder
