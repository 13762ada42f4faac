"""MERT v1 (m-a-p/MERT-v1-330M, or -95M with variant="95m"), run as transformers' HubertModel.

The hub repositories ship remote code (``MERTModel``, ``model_type: mert_model``) that
subclasses HuBERT and differs from it only when ``feature_extractor_cqt`` (an nnAudio CQT
concatenated to the conv features) or ``deepnorm`` (scaled residuals) is on. Both are off in
MERT-v1; ``attention_relax`` only acts inside the deepnorm layer and, where it does, subtracts
a row maximum before the softmax, which leaves the softmax unchanged. So the stock HubertModel
computes the same output from the same weights and we never run the remote code (which also
breaks under transformers 5: it returns no hidden states). A config with either switch on is
refused with a clear message rather than silently computed differently.

The track vector is the last hidden state (layer 24 for 330M, 12 for 95M) averaged over time,
as in the paper's extraction script. The hub processor standardises each clip (zero mean,
unit variance) and that is the default here; the paper fed raw 24 kHz samples zero-padded to
30 s, which ``paper_compat`` reproduces.

Variants: the 95M model is post-LayerNorm (``do_stable_layer_norm: false``) and 768 wide, the
330M one pre-LayerNorm and 1024 wide. The layout is checked against the chosen variant so a
95M folder is not indexed under the 330M version. The 95M weights live in a ``95m`` folder
inside the MERT weights folder; ``backends fetch mert --from FOLDER`` puts them there when
the folder holds the 95M model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends import REGISTRY, weights_dir
from backends._hf import HFAudioBackend, read_config
from backends.base import BackendError

VARIANTS: dict[str, dict[str, Any]] = {
    "330m": {"repo": "m-a-p/MERT-v1-330M", "dim": 1024, "stable_layer_norm": True, "subfolder": ""},
    "95m": {"repo": "m-a-p/MERT-v1-95M", "dim": 768, "stable_layer_norm": False, "subfolder": "95m"},
}
DEFAULT_VARIANT = "330m"
# Switches of the remote MERTConfig that make MERTModel differ from HubertModel.
UNSUPPORTED_SWITCHES = ("feature_extractor_cqt", "deepnorm")


def variant_of_config(raw: dict[str, Any]) -> str:
    return "330m" if raw.get("do_stable_layer_norm") else "95m"


class MertBackend(HFAudioBackend):
    spec = REGISTRY["mert"]
    config_class_name = "HubertConfig"
    model_class_name = "HubertModel"
    accepted_model_types = ("mert_model", "music_hubert", "hubert")
    hub_repo = VARIANTS[DEFAULT_VARIANT]["repo"]
    state_dict_prefixes = ("mert_model.", "hubert.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        variant = str(self.options.get("variant") or DEFAULT_VARIANT).lower()
        if variant not in VARIANTS:
            raise BackendError(f"MERT has no variant {variant!r}", f"choose one of: {', '.join(VARIANTS)}")
        self.variant = variant

    def expected_dim(self) -> int:
        return VARIANTS[self.variant]["dim"]

    def default_weights_folder(self) -> Path | None:
        subfolder = VARIANTS[self.variant]["subfolder"]
        return weights_dir(self.spec.name) / subfolder if subfolder else None

    def check_config(self, raw: dict[str, Any], path: Path) -> None:
        on = [key for key in UNSUPPORTED_SWITCHES if raw.get(key)]
        if on:
            raise BackendError(
                f"{path}: {' and '.join(on)} is on; this MERT build needs the remote code, which mrs-tui never runs",
                "use MERT-v1-330M or MERT-v1-95M, whose configs have both off",
            )
        rate = raw.get("sample_rate", self.sample_rate)
        if rate != self.sample_rate:
            raise BackendError(
                f"{path}: a model for {rate} Hz audio, but MERT-v1 takes {self.sample_rate} Hz",
                "give the folder of the MERT-v1 weights",
            )
        found = variant_of_config(raw)
        if found != self.variant:
            raise BackendError(
                f"{path}: these are MERT-{found.upper()}-style weights, but variant {self.variant} was chosen",
                f"use variant={found}, or give the folder of the MERT-{self.variant.upper()} weights",
            )

    @classmethod
    def install_target(cls, source: Path) -> Path:
        variant = variant_of_config(read_config(source, cls.spec.name))
        subfolder = VARIANTS[variant]["subfolder"]
        return weights_dir(cls.spec.name) / subfolder if subfolder else weights_dir(cls.spec.name)

    @classmethod
    def fetch(
        cls,
        *,
        source: str | Path | None = None,
        allow_pickle: bool = False,
        revision: str | None = None,
        variant: str = DEFAULT_VARIANT,
    ) -> Path:
        """From a folder (either variant, recognised by its config) or the hub (`variant`'s repository)."""
        if source is not None:
            return super().fetch(source=source, allow_pickle=allow_pickle, revision=revision)
        if variant not in VARIANTS:
            raise BackendError(f"MERT has no variant {variant!r}", f"choose one of: {', '.join(VARIANTS)}")
        return cls.fetch_hub(
            VARIANTS[variant]["repo"],
            revision=revision,
            allow_pickle=allow_pickle,
            subfolder=VARIANTS[variant]["subfolder"],
        )

    @classmethod
    def checkpoint_config(cls, size: str, *, variant: str = DEFAULT_VARIANT, **kwargs: Any) -> dict[str, Any]:
        """The config.json of the hub repository (remote-code layout), tiny or real size."""
        if kwargs:
            raise TypeError(f"unexpected options {sorted(kwargs)}")
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

    @classmethod
    def upstream_state_dict(cls, model) -> dict:
        """Tensor names of the hub's pytorch_model.bin: weight-norm as weight_g / weight_v."""
        renamed = {}
        for key, value in model.state_dict().items():
            key = key.replace("parametrizations.weight.original0", "weight_g")
            key = key.replace("parametrizations.weight.original1", "weight_v")
            renamed[key] = value
        return renamed
