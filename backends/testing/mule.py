"""A random MULE in the hub checkpoint's layout (config.json + model.safetensors, mule-torch's names)."""

from __future__ import annotations

import json
from pathlib import Path

from backends.mule import MuleArchitecture

TINY_ARCHITECTURE = MuleArchitecture(
    slow_stem_channels=(4, 4, 4, 8),
    fast_stem_channels=(2, 2, 2, 4),
    slow_stage_out=(16, 16, 32, 32),
    fast_stage_out=(4, 8, 8, 8),
    slow_group_size=8,
    fast_group_size=2,
    fusion_input_channels=(4, 4, 8, 8),
    fusion_output_channels=(8, 16, 16, 32),
)


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    """Random weights, with skip gains non-zero so every block's residual branch counts."""
    import torch
    from safetensors.torch import save_file

    from backends.mule import MuleModel

    arch = TINY_ARCHITECTURE if size == "tiny" else MuleArchitecture()
    torch.manual_seed(seed)
    model = MuleModel(arch)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith("skip_gain"):
                param.uniform_(0.2, 1.0)
            elif name.endswith(("gain", "bias")) and param.dim() == 1:
                param.copy_(torch.randn_like(param) * 0.1 + (1.0 if name.endswith("gain") else 0.0))
    state = {f"backbone.{k}": v.contiguous() for k, v in model.backbone.state_dict().items()}
    state["frontend.mel_fb"] = model.frontend.mel_fb.contiguous()
    path = folder / "model.safetensors"
    save_file(state, str(path))
    (folder / "config.json").write_text(json.dumps(arch.to_config(), indent=2))
    return path
