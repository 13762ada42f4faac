"""Random transformers-layout checkpoints (config.json + pytorch_model.bin), as the hub ships them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.testing._common import perturb_norms_


def write_transformers_checkpoint(
    backend_cls: type,
    raw_config: dict[str, Any],
    folder: Path,
    *,
    seed: int,
    rename: Callable[[str], str] = lambda key: key,
) -> Path:
    """A randomly initialised `backend_cls` model with the upstream `raw_config`; tensor names through `rename`."""
    import torch
    import transformers

    from backends._hf import DROPPED_CONFIG_KEYS, patch_unused_fields, quiet_transformers

    values = dict(raw_config)
    patch_unused_fields(values, backend_cls.unused_field_defaults)
    config = getattr(transformers, backend_cls.config_class_name)(
        **{k: v for k, v in values.items() if k not in DROPPED_CONFIG_KEYS}
    )
    torch.manual_seed(seed)
    with quiet_transformers():
        model = getattr(transformers, backend_cls.model_class_name)(config).eval()
    perturb_norms_(model, torch.Generator().manual_seed(seed + 1), std=0.1)
    (folder / "config.json").write_text(json.dumps(raw_config, indent=2) + "\n", encoding="utf-8")
    state_dict = {rename(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state_dict, folder / "pytorch_model.bin")
    return folder
