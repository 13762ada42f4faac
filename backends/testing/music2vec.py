"""A random Music2Vec v1 in the hub layout (data2vec-audio config.json + pytorch_model.bin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.testing._hf import write_transformers_checkpoint


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    from backends.music2vec import Music2VecBackend

    return write_transformers_checkpoint(Music2VecBackend, checkpoint_config(size), folder, seed=seed)


def checkpoint_config(size: str) -> dict[str, Any]:
    """The config.json of m-a-p/music2vec-v1, or of a tiny model of the same shape."""
    if size == "real":
        # facebook/data2vec-audio-base dimensions, which music2vec-v1 uses.
        dims = {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "conv_dim": [512] * 7,
            "num_conv_pos_embeddings": 5,
            "conv_pos_kernel_size": 19,
            "num_conv_pos_embedding_groups": 16,
        }
    else:
        dims = {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "conv_dim": [32] * 7,
            "num_conv_pos_embeddings": 2,
            "conv_pos_kernel_size": 19,
            "num_conv_pos_embedding_groups": 2,
        }
    return {
        "architectures": ["Data2VecAudioModel"],
        "model_type": "data2vec-audio",
        "activation_dropout": 0.0,
        "attention_dropout": 0.1,
        "conv_bias": True,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "feat_extract_activation": "gelu",
        "feat_proj_dropout": 0.0,
        "hidden_act": "gelu",
        "hidden_dropout": 0.1,
        "layer_norm_eps": 1e-05,
        "mask_time_prob": 0.05,
        "transformers_version": "4.24.0",
        # The upstream file holds the fairseq dictionary path here, not a size.
        "vocab_size": "manifest/dict.ltr.txt",
        **dims,
    }
