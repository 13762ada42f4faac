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
    def download(cls, *, revision: str | None, allow_pickle: bool, **options: object) -> Path:
        """The hub repository of the `variant` option (330m by default)."""
        variant = str(options.get("variant") or DEFAULT_VARIANT).lower()
        if variant not in VARIANTS:
            raise BackendError(f"MERT has no variant {variant!r}", f"choose one of: {', '.join(VARIANTS)}")
        return cls.fetch_hub(
            VARIANTS[variant]["repo"],
            revision=revision,
            allow_pickle=allow_pickle,
            subfolder=VARIANTS[variant]["subfolder"],
        )
