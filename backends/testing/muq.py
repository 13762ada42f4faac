"""A random MuQ in the hub layout: config.json (MuQConfig) + model.safetensors with "model." names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SIZES = {
    "real": {"encoder_dim": 1024, "encoder_depth": 12, "conv_dim": 512, "intermediate_size": 4096, "heads": 16},
    "tiny": {"encoder_dim": 64, "encoder_depth": 2, "conv_dim": 8, "intermediate_size": 128, "heads": 4},
}


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    from safetensors.torch import save_file

    from backends.muq import PREFIX

    config = random_config(size)
    state = random_encoder_state(config, seed=seed)
    save_file({PREFIX + k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def random_config(size: str) -> dict[str, Any]:
    """A MuQConfig dict as ``PyTorchModelHubMixin`` saves it, with the real model's settings at "real"."""
    from backends._conformer import conformer_config

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


def random_encoder_state(config: dict[str, Any], *, seed: int) -> dict:
    """Random MuQModel tensors (names relative to MuQModel), including the training-only ones."""
    import torch

    from backends.muq import build_encoder
    from backends.testing._common import perturb_norms_

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_encoder(config, config_path=Path("config.json"))
        generator = torch.Generator().manual_seed(seed)
        perturb_norms_(model, generator, std=0.2)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        hidden, codebook = config["encoder_dim"], config["codebook_size"]
        state["linear.weight"] = torch.randn(codebook, hidden, generator=generator) * 0.02
        state["linear.bias"] = torch.zeros(codebook)
        state["cls_token"] = torch.randn(hidden, generator=generator)
        state["quantizer_melspec_2048.random_projection"] = torch.randn(512, 16, generator=generator)
        state["quantizer_melspec_2048.codebook"] = torch.randn(codebook, 16, generator=generator)
    return state
