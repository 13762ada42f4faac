"""Ray stays optional: without it `--ray` says exactly what to install, and nothing else needs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import make_library

# Runs the CLI in a fresh interpreter where `import ray` fails, as on a machine without the extra.
WITHOUT_RAY = textwrap.dedent(
    """
    import sys
    sys.modules["ray"] = None
    from mrs_tui.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def run_without_ray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_RAY, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command", [["index", "{music}", "--backend", "mfcc", "--ray", "auto"], ["eval", "--ray", "local"]]
)
def test_without_ray_the_ray_option_names_what_to_install(command, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    args = [arg.format(music=music) for arg in command]
    result = run_without_ray("--db", str(tmp_path / "library.db"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "mrs-tui: error: --ray needs the Ray package, which is not installed — install it with: "
        'pip install "mrs-tui[ray]" (or: pip install "ray[client]>=2.60")'
    ]


def test_without_ray_indexing_and_evaluating_work_as_before(tmp_path):
    music = tmp_path / "music"
    make_library(music, styles=("piano",), per_style=2, seconds=2.0, formats=(".wav",))
    db = str(tmp_path / "library.db")
    indexed = run_without_ray("--db", db, "index", str(music), "--backend", "mfcc", "-q")
    assert indexed.returncode == 0, indexed.stderr
    assert "analysed 2 with mfcc" in indexed.stdout


def test_a_cluster_address_that_is_not_one_is_refused_before_any_work(tmp_path):
    pytest.importorskip("ray", reason="the address is checked once Ray is there")
    from mrs_tui.cli import main

    music = tmp_path / "music"
    music.mkdir()
    assert main(["--db", str(tmp_path / "library.db"), "index", str(music), "--ray", "somewhere"]) == 2


def test_ship_audio_without_a_cluster_is_refused(tmp_path, capsys):
    from mrs_tui.cli import main

    music = tmp_path / "music"
    music.mkdir()
    assert main(["--db", str(tmp_path / "library.db"), "index", str(music), "--ship-audio"]) == 2
    assert "--ship-audio only applies to a cluster run" in capsys.readouterr().err
