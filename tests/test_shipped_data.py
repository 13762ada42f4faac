"""The data/ folder: what mrs-tui ships is found in a checkout and inside a built wheel, and the
demo library is written from its recipe there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from mrs_tui.demo import create_demo_library
from mrs_tui.errors import UserError
from mrs_tui.library import read_tags
from mrs_tui.paths import shipped_data

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_library_follows_its_recipe(tmp_path):
    recipe = tomllib.loads((ROOT / "data" / "demo" / "recipe.toml").read_text(encoding="utf-8"))
    paths = create_demo_library(tmp_path, tracks_per_style=1, seconds=1.0)
    assert len(paths) == len(recipe["style"])
    read = [read_tags(path) for path in paths]
    assert [(tags["artist"], tags["genre"]) for tags, _ in read] == [(s["artist"], s["genre"]) for s in recipe["style"]]
    assert {tags["year"] for tags, _ in read} == {recipe["year"]}
    assert {p.suffix for p in paths} == set(recipe["formats"][: len(paths)])
    assert all(duration == pytest.approx(1.0, abs=0.1) for _, duration in read)


def test_a_missing_shipped_file_is_a_one_line_error():
    with pytest.raises(UserError, match=r"a file mrs-tui ships is missing — reinstall mrs-tui"):
        shipped_data("demo", "no-such-recipe.toml")


@pytest.mark.slow
def test_a_built_wheel_ships_the_data_folder_and_finds_it(tmp_path):
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # a copy: building writes build/ beside the sources
    for name in ("mrs_tui", "backends", "recommenders", "data"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("mrs_tui-*.whl")
    shipped = {p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data").rglob("*") if p.is_file()}
    with zipfile.ZipFile(wheel) as archive:
        packed = {n.removeprefix("mrs_tui/_data/") for n in archive.namelist() if n.startswith("mrs_tui/_data/")}
        archive.extractall(tmp_path / "site")
    assert shipped and packed == shipped
    probe = "from mrs_tui.config import default_config_text; import mrs_tui.paths as p; print(p.shipped_data_dir())"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")}, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.decode().strip()) == tmp_path / "site" / "mrs_tui" / "_data"
