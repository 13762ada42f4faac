"""A random MERT v1 in the hub layout (remote-code config.json + pytorch_model.bin, weight_g/weight_v names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.testing._common import legacy_weight_norm_name
from backends.testing._hf import write_transformers_checkpoint


def write_random_checkpoint(folder: Path, *, size: str, seed: int, variant: str = "330m") -> Path:
    from backends.mert import MertBackend

    return write_transformers_checkpoint(
        MertBackend, checkpoint_config(size, variant), folder, seed=seed, rename=legacy_weight_norm_name
    )


def checkpoint_config(size: str, variant: str = "330m") -> dict[str, Any]:
    """The config.json of the hub repository of `variant`, or of a tiny model of its shape."""
    from backends.mert import VARIANTS

    large = VARIANTS[variant]["stable_layer_norm"]
    if size == "real":
        dims = {
            "hidden_size": 1024 if large else 768,
            "num_hidden_layers": 24 if large else 12,
            "num_attention_heads": 16 if large else 12,
            "intermediate_size": 4096 if large else 3072,
            "conv_dim": [512] * 7,
            "num_conv_pos_embeddings": 128,
            "num_conv_pos_embedding_groups": 16,
        }
    else:
        dims = {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "conv_dim": [32] * 7,
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
        }
    return {
        "architectures": ["MERTModel"],
        "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
        "model_type": "mert_model",
        "activation_dropout": 0.0 if large else 0.1,
        "attention_dropout": 0.0 if large else 0.1,
        "attention_relax": 32.0 if large else -1.0,
        "classifier_proj_size": 256,
        "conv_bias": False,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "deepnorm": False,
        "do_stable_layer_norm": large,
        "feat_extract_activation": "gelu",
        "feat_extract_norm": "group",
        "feat_proj_dropout": 0.0 if large else 0.1,
        "feat_proj_layer_norm": True,
        "feature_extractor_cqt": False,
        "feature_extractor_cqt_bins": 336,
        "final_dropout": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout": 0.0 if large else 0.1,
        "layer_norm_eps": 1e-05,
        "layerdrop": 0.0 if large else 0.1,
        "mask_time_prob": 0.075 if large else 0.05,
        "sample_rate": 24000,
        "transformers_version": "4.25.1",
        "vocab_size": 32,
        **dims,
    }
