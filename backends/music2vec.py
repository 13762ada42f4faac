"""Music2Vec v1 (m-a-p/music2vec-v1): a data2vec-style encoder, run as transformers' Data2VecAudioModel.

The checkpoint is a plain data2vec-audio base model (12 layers x 768, 16 kHz, 50 frames/s), so
no remote code is involved. The track vector is the last hidden state averaged over time, as
in the paper's extraction script.

Where the paper and the model disagree:
- The paper read 720 000 samples from 24 kHz files and fed them to this 16 kHz model, i.e. the
  model heard the music slowed to 2/3 speed and a fifth lower. By default we resample to
  16 kHz; ``paper_compat`` makes `sample_rate` 24 000 so the indexer hands over 24 kHz samples
  unchanged, and pads to the full 30-s clip as the paper's reader did.
- The hub processor standardises each clip (zero mean, unit variance); the paper fed raw
  samples. Default: standardise; ``paper_compat``: raw.
- The published config.json has a path string as ``vocab_size``, which transformers 5's
  strict config validation rejects; the bare encoder never reads it, so it is replaced by the
  default before the config is built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from backends import REGISTRY
from backends._hf import HFAudioBackend

PAPER_SAMPLE_RATE = 24000


class Music2VecBackend(HFAudioBackend):
    spec = REGISTRY["music2vec"]
    config_class_name = "Data2VecAudioConfig"
    model_class_name = "Data2VecAudioModel"
    accepted_model_types = ("data2vec-audio",)
    hub_repo = "m-a-p/music2vec-v1"
    state_dict_prefixes = ("data2vec_audio.",)
    unused_field_defaults: ClassVar[dict[str, Any]] = {"vocab_size": 32}

    @property
    def sample_rate(self) -> int:
        return PAPER_SAMPLE_RATE if self.paper_compat else self.spec.sample_rate

    @classmethod
    def checkpoint_config(cls, size: str, **kwargs: Any) -> dict[str, Any]:
        if kwargs:
            raise TypeError(f"unexpected options {sorted(kwargs)}")
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
