"""Random MSD and MTT MusiCNN models in the stored layout (TensorFlow names and layouts, safetensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    """Both models (the architecture has one size only, so `size` changes nothing)."""
    from safetensors.numpy import save_file

    from backends.musicnn import MODELS

    for offset, model in enumerate(MODELS):
        save_file(random_tf_tensors(seed + offset), str(folder / f"{model}.safetensors"), metadata={"model": model})
    return folder


def random_tf_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """A randomly initialised MusiCNN in the stored layout, with batch-norms that are not identities."""
    import torch
    from torch import nn

    from backends.musicnn import MusicnnNet

    torch.manual_seed(seed)
    net = MusicnnNet()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm1d):
                n = module.num_features
                module.weight.copy_(torch.randn(n, generator=generator) * 0.5 + 0.5)  # some negative, as upstream
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return net.prepare().to_tf_tensors()
