"""Randomly initialised checkpoints of every backend, in the upstream file layout.

For tests and benchmarks only; nothing at run time imports this package. Loading code is
tested on these files (real file formats, upstream tensor names, the extra training-only
tensors upstream saves), and speed depends on the architecture, not on the weights' values,
so `bench/` measures real-size random models. Each backend's writer lives in a module of the
same name here; the registry below names them as strings, like the backend registry, so
importing this package imports no backend.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Backend name -> "module:function" writing its random checkpoint.
WRITERS: dict[str, str] = {
    name: f"backends.testing.{name}:write_random_checkpoint"
    for name in ("musicnn", "music2vec", "mert", "musicfm", "muq", "muq_mulan", "encodecmae", "mule", "jukebox")
}

SIZES = ("tiny", "real")


def has_random_checkpoint(name: str) -> bool:
    return name in WRITERS


def write_random_checkpoint(name: str, folder: str | Path, *, size: str = "tiny", seed: int = 0, **options) -> Path:
    """Write backend `name`'s random checkpoint into `folder`; returns the folder or its main file.

    `size` is "tiny" (seconds to write and run, for tests) or "real" (the published
    architecture, for benchmarks). `options` are the writer's own (MERT's ``variant``,
    Jukebox's ``layout``).
    """
    if size not in SIZES:
        raise ValueError(f"size must be 'tiny' or 'real', not {size!r}")
    try:
        target = WRITERS[name]
    except KeyError:
        raise ValueError(f"backend {name!r} has no random checkpoint writer") from None
    module_name, _, function_name = target.partition(":")
    writer = getattr(importlib.import_module(module_name), function_name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return writer(folder, size=size, seed=seed, **options)
