"""A random EncodecMAE in the upstream layout: model.pt ({'state_dict'}), config.gin, imports."""

from __future__ import annotations

import math
from pathlib import Path

from backends.encodecmae import EncodecMAEConfig

# Same strides (hop 320, 75 frames/s) as `base`, so chunking and masking behave as at real size.
TINY_CONFIG = EncodecMAEConfig(n_filters=4, latent_dim=16, model_dim=32, num_layers=2, num_heads=4, ff_dim=64)
# Sizes of the pre-training parts upstream saves beside the feature path.
PRETRAINING = {
    "tiny": {"decoder_layers": 1, "num_tokens": 16, "num_streams": 2, "num_quantizers": 2, "codebook": 16},
    "real": {"decoder_layers": 2, "num_tokens": 1024, "num_streams": 8, "num_quantizers": 32, "codebook": 1024},
}


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    """Besides the feature path, the pre-training parts upstream saves too (EnCodec quantizer
    codebooks, decoder, head), so the loader is exercised on a complete file."""
    import torch
    from torch import nn

    from backends.encodecmae import EncodecMAEModel, ResiDualEncoder, to_upstream_key, upstream_state_dict

    cfg = TINY_CONFIG if size == "tiny" else EncodecMAEConfig()
    extra = PRETRAINING[size]
    torch.manual_seed(seed)
    model = EncodecMAEModel(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            name = to_upstream_key(name)
            if name.endswith(("weight_v",)) or (param.dim() == 2):
                nn.init.normal_(param, std=1.0 / math.sqrt(param.shape[-1]))
            elif name.endswith("bias") or name.endswith("weight_g"):
                param.normal_(mean=1.0 if name.endswith("weight_g") else 0.0, std=0.1)
        model.positional_encoder.scale.fill_(0.5)
    state = upstream_state_dict(model)
    generator = torch.Generator().manual_seed(seed + 1)
    for q in range(extra["num_quantizers"]):
        prefix = f"target_encoder.model.vq.layers.{q}._codebook."
        embed = torch.randn(extra["codebook"], cfg.latent_dim, generator=generator)
        state[prefix + "inited"] = torch.ones(1)
        state[prefix + "cluster_size"] = torch.ones(embed.shape[0])
        state[prefix + "embed"] = embed
        state[prefix + "embed_avg"] = embed.clone()
    decoder = ResiDualEncoder(cfg, extra["decoder_layers"])
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    projector = nn.Linear(cfg.model_dim, cfg.model_dim)
    state.update({f"decoder_projector.{k}": v for k, v in projector.state_dict().items()})
    head = nn.Linear(cfg.model_dim, extra["num_tokens"] * extra["num_streams"])
    state.update({f"head.layer.{k}": v for k, v in head.state_dict().items()})
    path = folder / "model.pt"
    torch.save({"state_dict": state}, path)
    (folder / "config.gin").write_text(
        f"NUM_ENCODER_LAYERS={cfg.num_layers}\nNUM_ENCODER_HEADS={cfg.num_heads}\n"
        f"MODEL_DIM={cfg.model_dim}\nNUM_DECODER_LAYERS={extra['decoder_layers']}\n"
        "encoder/tasks.models.transformers.MultiHeadAttention:\n"
        "    model_dim=%MODEL_DIM\n    num_heads=%NUM_ENCODER_HEADS\n"
    )
    (folder / "imports").write_text("import tasks.models\nimport tasks.models.transformers\n")
    return path
