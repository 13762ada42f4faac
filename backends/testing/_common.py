"""What several writers share: non-trivial norm layers and the old weight-norm tensor names."""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def perturb_norms_(module: nn.Module, generator: torch.Generator, std: float) -> None:
    """Give norm layers scales near 1 and biases near 0 (`std` apart), and batch norms statistics.

    Fresh init leaves every norm at weight 1, bias 0 (and batch-norm statistics at 0 and 1),
    which would let a loader that dropped or swapped them pass the tests.
    """
    with torch.no_grad():
        for child in module.modules():
            if isinstance(child, _NORMS) and child.weight is not None:
                child.weight.copy_(1.0 + std * torch.randn(child.weight.shape, generator=generator))
                child.bias.copy_(std * torch.randn(child.bias.shape, generator=generator))
            if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
                child.running_mean.copy_(0.2 * torch.randn(child.running_mean.shape, generator=generator))
                child.running_var.copy_(1.0 + 0.5 * torch.rand(child.running_var.shape, generator=generator))
                child.num_batches_tracked.fill_(1000)


def legacy_weight_norm_name(key: str) -> str:
    """Checkpoints saved before torch's weight-norm parametrisation name its tensors weight_g / weight_v."""
    return key.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"
    )
