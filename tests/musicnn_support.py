"""Shared by the MusiCNN and checkpoint-reader tests: the real musicnn 0.1.0 wheel and the reference folder.

The wheel (29 MB, ISC licence) is fetched once per machine with the same ``pip download`` the app
uses and kept in pytest's cache folder; ``MRS_TUI_MUSICNN_WHEEL`` may name a copy instead. The
reference outputs of the original TensorFlow code are read from ``MRS_TUI_REFERENCE_DIR`` or
from ``shared/reference/musicnn`` beside the repository (where CI puts them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path | None:
    override = os.environ.get("MRS_TUI_REFERENCE_DIR")
    candidates = [Path(override)] if override else []
    candidates.append(REPO.parent / "shared" / "reference")
    for base in candidates:
        for folder in (base / "musicnn", base):
            if (folder / "manifest.json").is_file() and (folder / "variables.tsv").is_file():
                return folder
    return None


def require_reference() -> Path:
    folder = reference_dir()
    if folder is None:
        pytest.skip("MusiCNN reference outputs not found: set MRS_TUI_REFERENCE_DIR or put shared/ beside the repo")
    return folder


def reference_clips(folder: Path, model: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*__{model}.npz") if not p.name.startswith("intermediates__"))


def fetch_wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backends.base import WeightsMissing
    from backends.musicnn import WHEEL_FILENAME, _sha256_file, download_wheel, pinned_sha256

    named = os.environ.get("MRS_TUI_MUSICNN_WHEEL")
    if named:
        return Path(named)
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("musicnn-wheel") if cache is not None else tmp_path_factory.mktemp("musicnn-wheel")
    wheel = Path(folder) / WHEEL_FILENAME
    if wheel.is_file() and _sha256_file(wheel) == pinned_sha256(WHEEL_FILENAME):
        return wheel
    try:
        return download_wheel(Path(folder), timeout=300)
    except WeightsMissing as exc:
        pytest.skip(f"cannot download the musicnn wheel from PyPI: {exc}")
