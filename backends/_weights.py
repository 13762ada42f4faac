"""Finding and safely reading weight files, shared by every backend that has weights.

Weights come from, in this order: a folder or file the user names, the user cache
(`weights_dir(name)`, filled by ``mrs-tui backends fetch``), or the Hugging Face hub when the
user has network access and has not asked for offline mode. Torch checkpoints are read with
``weights_only=True``; a pickle that needs more is refused unless the user passed
``--allow-pickle``. Remote code is never run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from backends.base import BackendError, BackendSpec, WeightsMissing


def resolve_weights(spec: BackendSpec, weights: str | Path | None) -> Path:
    """The local folder holding `spec`'s weights, or a one-line error saying how to get them."""
    from backends import _has_files, weights_dir

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsMissing(
                f"weights for {spec.name}: {path} does not exist",
                f"give the folder that holds {', '.join(spec.weights_files)}, or run {spec.fetch_hint}",
            )
        folder = path if path.is_dir() else path.parent
    else:
        folder = weights_dir(spec.name)
    if spec.weights_files and not _has_files(folder, spec.weights_files):
        missing = [g for g in spec.weights_files if not any((folder / a).is_file() for a in g.split("|"))]
        raise WeightsMissing(
            f"weights for {spec.name} not found in {folder} (missing {', '.join(missing)})",
            f"run: {spec.fetch_hint}",
        )
    return folder


def find_file(folder: Path, alternatives: str) -> Path:
    """The first existing file of "a|b|c" in `folder`."""
    for name in alternatives.split("|"):
        if (folder / name).is_file():
            return folder / name
    raise WeightsMissing(f"none of {alternatives.replace('|', ', ')} in {folder}")


def load_state_dict(path: Path, *, allow_pickle: bool = False) -> dict:
    """Tensors of a .safetensors / .pt / .bin / .ckpt file, safely."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise BackendError(f"{path}: not a readable safetensors file ({exc})", "fetch the weights again") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _needs_full_pickle(exc):
            raise BackendError(
                f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc)[:200]})",
                "the file may be truncated or corrupt: fetch the weights again",
            ) from exc
        if not allow_pickle:
            raise BackendError(
                f"{path}: the checkpoint holds Python objects, not just tensors",
                "pass --allow-pickle only if you trust where the file came from",
            ) from exc
        return torch.load(path, map_location="cpu", weights_only=False)


def _needs_full_pickle(exc: Exception) -> bool:
    import pickle

    text = str(exc)
    return isinstance(exc, pickle.UnpicklingError) and (
        "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def fetch_from_hub(
    spec: BackendSpec,
    repo_id: str,
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """Download `filenames` of `repo_id` into the user's weights folder for `spec`."""
    from backends import weights_dir

    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BackendError("huggingface_hub is not installed", "pip install huggingface-hub") from exc
    offline = hub_offline() if local_files_only is None else local_files_only
    target = weights_dir(spec.name)
    target.mkdir(parents=True, exist_ok=True)
    for filename in filenames:
        try:
            cached = hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
        except LocalEntryNotFoundError as exc:
            raise WeightsMissing(
                f"{repo_id}/{filename} is not in the local hub cache and offline mode is on",
                "unset HF_HUB_OFFLINE on a machine with network access, or use --from FOLDER",
            ) from exc
        except Exception as exc:
            raise WeightsMissing(
                f"could not download {repo_id}/{filename}: {type(exc).__name__}: {str(exc)[:160]}",
                f"download it by hand and run: mrs-tui backends fetch {spec.name} --from FOLDER",
            ) from exc
        shutil.copyfile(cached, target / filename)
    return target


def install_from_folder(spec: BackendSpec, folder: Path) -> Path:
    """Copy a user-provided weights folder into the cache after checking it has what we need."""
    from backends import _has_files, weights_dir

    folder = Path(folder).expanduser()
    if folder.is_file():  # a weights file names its folder
        folder = folder.parent
    if not folder.is_dir():
        raise WeightsMissing(f"{folder} does not exist", "give the folder (or a file in it) that holds the weights")
    if spec.weights_files and not _has_files(folder, spec.weights_files):
        raise WeightsMissing(
            f"{folder} does not hold the {spec.name} weights ({', '.join(spec.weights_files)})",
            "check the folder, or run the backend's fetch without --from",
        )
    target = weights_dir(spec.name)
    if target.resolve() == folder.resolve():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_file():
            shutil.copyfile(item, target / item.name)
    return target


def pick_device(requested: str | None = None):
    """torch.device: the requested one, else CUDA when torch sees it, else CPU."""
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
