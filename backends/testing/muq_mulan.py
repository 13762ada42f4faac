"""A random MuQ-MuLan in the hub layout (config.json, model.safetensors) plus muq_config.json."""

from __future__ import annotations

import json
from pathlib import Path

from backends.testing.muq import random_config, random_encoder_state

SIZES = {
    "real": {"muq": "real", "dim": 768, "depth": 8, "heads": 8, "dim_head": 64, "latent": 512, "clip_secs": 10},
    "tiny": {"muq": "tiny", "dim": 32, "depth": 2, "heads": 2, "dim_head": 8, "latent": 16, "clip_secs": 2},
}


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    import torch
    from safetensors.torch import save_file

    from backends.muq import HUB_REPO as MUQ_REPO
    from backends.muq_mulan import MUQ_CONFIG, build_audio_model

    sizes = SIZES[size]
    muq_config = random_config(sizes["muq"])
    transformer = {
        "dim": sizes["dim"],
        "tf_depth": sizes["depth"],
        "dim_head": sizes["dim_head"],
        "heads": sizes["heads"],
        "attn_dropout": 0.0,
        "ff_dropout": 0.0,
        "ff_mult": 4,
    }
    config = {
        "mulan": {
            "sr": 24000,
            "clip_secs": sizes["clip_secs"],
            "dim_latent": sizes["latent"],
            "decoupled_contrastive_learning": True,
            "hierarchical_contrastive_loss": False,
            "hierarchical_contrastive_loss_layers": None,
            "sigmoid_contrastive_loss": False,
            "rank_contrast": True,
        },
        "audio_model": {"name": MUQ_REPO, "model_dim": muq_config["encoder_dim"], "use_layer_idx": -1},
        "text_model": {"name": "xlm-roberta-base", "model_dim": 768, "use_layer_idx": -1},
        "audio_transformer": transformer,
        "text_transformer": {**transformer, "max_seq_len": 1024},
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed + 1)
        model = build_audio_model(config, muq_config, config_path=folder / "config.json")
        for name, parameter in model.named_parameters():
            if name.endswith(("learned_gamma", "q_scale", "k_scale")):
                with torch.no_grad():
                    parameter.copy_(1.0 + 0.3 * torch.randn(parameter.shape, generator=generator))
        state = {"mulan." + k: v.clone() for k, v in model.state_dict().items()}
        encoder_state = random_encoder_state(muq_config, seed=seed)
        state.update({"mulan.audio.model.model." + k: v for k, v in encoder_state.items()})
        state["mulan.audio.aggregator.weight"] = torch.randn(1, 25, 1, generator=generator)
        state["mulan.audio.aggregator.bias"] = torch.zeros(1)
        # A few text-tower tensors, so the loader's "audio only" reading is exercised.
        text_dim = sizes["dim"]
        state["mulan.text.model.embeddings.word_embeddings.weight"] = torch.randn(64, 768, generator=generator)
        state["mulan.text.proj.weight"] = torch.randn(text_dim, 768, generator=generator)
        state["mulan.text_to_latents.weight"] = torch.randn(sizes["latent"], text_dim, generator=generator)
        state["mulan.text_to_latents.bias"] = torch.zeros(sizes["latent"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / MUQ_CONFIG).write_text(json.dumps(muq_config, indent=2), encoding="utf-8")
    return folder
