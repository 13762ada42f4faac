"""Shared fixtures. Every test runs with its own XDG folders, so nothing touches the real home.

Analysing a library is the slow part of many tests, so `indexed_library` does it once per test
module and each test gets its own copy of the database (`copy_database`): tests stay
independent, the audio is decoded and analysed once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from mrs_tui.config import ENV_PREFIX, Settings
from mrs_tui.demo import STYLES, synthesize, write_track
from mrs_tui.store import Store

FIXTURE_RATE = 22050


# Parametrised cases too slow for the inner loop (`./dev test -m "not slow"`) whose cheaper
# siblings stay in it; whole tests carry `@pytest.mark.slow` themselves. Measured with
# `--durations=50`: each of these takes 15 s or more on a two-core machine.
SLOW_CASES = {
    "test_fitting_is_deterministic_under_a_seed[bert4rec]",
    "test_hot_recommendations_beat_random[context-bert4rec]",
    "test_port_matches_the_original_on_every_reference_clip[MTT_musicnn]",
    "test_fetch_from_folder_then_embed[mule]",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.name in SLOW_CASES:
            item.add_marker(pytest.mark.slow)


def isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point every folder and setting mrs-tui reads from the environment into `home`."""
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "config"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    settings = [ENV_PREFIX + f.name.upper() for f in fields(Settings)]
    for var in ("MRS_TUI_DB", "MRS_TUI_CONFIG", "MRS_TUI_CACHE", *settings):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@contextmanager
def isolated(home: Path) -> Iterator[Path]:
    """`isolate` for fixtures wider than one test (the function-scoped monkeypatch cannot serve them)."""
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, home)
        yield home


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    isolate(monkeypatch, home)
    return home


def copy_database(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite database (WAL included) through SQLite's backup API."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


@pytest.fixture(scope="module")
def indexed_library(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """Twelve tracks in three styles, scanned and analysed with mfcc once per test module.

    Returns the database (copy it with `copy_database` before writing to it) and the files by style.
    """
    from mrs_tui.engine import Engine

    base = tmp_path_factory.mktemp("indexed")
    with isolated(base / "home"):
        made = make_library(base / "music", styles=("techno", "piano", "chiptune"), per_style=4, seconds=3.0)
        store = Store.open(base / "db" / "library.db")
        engine = Engine(store)
        engine.scan(base / "music")
        engine.index()
        store.close()
    return base / "db" / "library.db", made


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
