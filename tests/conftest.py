"""Shared fixtures. Every test runs with its own XDG folders, so nothing touches the real home."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrs_tui.demo import STYLES, synthesize, write_track
from mrs_tui.store import Store

FIXTURE_RATE = 22050


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "config"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.delenv("MRS_TUI_DB", raising=False)
    monkeypatch.delenv("MRS_TUI_CONFIG", raising=False)
    monkeypatch.delenv("MRS_TUI_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(tmp_path / "library.db")
    yield s
    s.close()


def make_library(
    root: Path,
    *,
    styles: tuple[str, ...] = ("techno", "piano", "chiptune"),
    per_style: int = 3,
    seconds: float = 4.0,
    formats: tuple[str, ...] = (".flac", ".ogg", ".mp3", ".opus", ".wav"),
    broken: bool = False,
) -> dict[str, list[Path]]:
    """Write a tagged library of generated styles (and optionally one broken file of each kind)."""
    made: dict[str, list[Path]] = {}
    by_name = {s.name: s for s in STYLES}
    n = 0
    for style_name in styles:
        style = by_name[style_name]
        for i in range(per_style):
            ext = formats[n % len(formats)]
            n += 1
            path = root / style.artist / f"{style_name}-{i}{ext}"
            samples = synthesize(style, seconds, sr=FIXTURE_RATE, seed=100 * n + i)
            write_track(
                path,
                samples,
                FIXTURE_RATE,
                {
                    "title": f"{style.genre} {i}",
                    "artist": style.artist,
                    "album": f"{style.genre} LP",
                    "genre": style.genre,
                    "year": "2025",
                },
            )
            made.setdefault(style_name, []).append(path)
    if broken:
        made["broken"] = write_broken_files(root / "broken")
    return made


def write_broken_files(folder: Path) -> list[Path]:
    """One file per way a file can fail: empty, truncated, not audio, wrong extension."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp3"
    empty.write_bytes(b"")
    good = folder / "_source.flac"
    write_track(good, synthesize("piano", 3.0, sr=FIXTURE_RATE, seed=5), FIXTURE_RATE)
    data = good.read_bytes()
    truncated = folder / "truncated.flac"
    truncated.write_bytes(data[:200])  # header survives, no audio frames
    good.unlink()
    not_audio = folder / "notes.ogg"
    not_audio.write_text("these are liner notes, not audio\n" * 50)
    wrong_ext = folder / "cover.mp3"
    wrong_ext.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8)))
    return [empty, truncated, not_audio, wrong_ext]


@pytest.fixture
def library(tmp_path) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path / "music"
    return root, make_library(root)
