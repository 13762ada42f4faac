"""Shared pieces of the fault-injection suite (tests/test_faults_*.py).

`CountingBackend` is the band-energy test backend that also appends one line per analysed
waveform to the file named by ``$FAULTS_ANALYSIS_LOG``, so a test can count how many times
tracks were analysed across several processes (and sleeps ``$FAULTS_EMBED_DELAY`` seconds per
waveform, so a test can kill a run in the middle of a batch). `run_cli` runs the real command line in a
subprocess (with that backend registered) under a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mrs_tui.demo import synthesize, write_track
from tests.test_indexing import ENERGY_SPEC, BandEnergyBackend

REPO = Path(__file__).resolve().parent.parent
RATE = 22050
COUNTED_SPEC = replace(ENERGY_SPEC, name="counted", target="tests.faults_helpers:CountingBackend")


class CountingBackend(BandEnergyBackend):
    spec = COUNTED_SPEC

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        delay = float(os.environ.get("FAULTS_EMBED_DELAY", "0"))
        log = os.environ.get("FAULTS_ANALYSIS_LOG")
        if delay:
            time.sleep(delay * len(waveforms))  # a slower backend leaves time to kill mid-batch
        if log:
            with open(log, "a") as f:
                f.write("".join(f"{os.getpid()}\n" for _ in waveforms))
        return super().embed(waveforms)


def register(monkeypatch) -> None:
    import backends

    monkeypatch.setitem(backends.REGISTRY, "counted", COUNTED_SPEC)


def write_tracks(root: Path, n: int, *, seconds: float = 1.5, ext: str = ".wav", seed: int = 0) -> list[Path]:
    """`n` distinct short tracks (different content, so no two are taken for a move)."""
    root.mkdir(parents=True, exist_ok=True)
    styles = ("techno", "piano", "chiptune")
    paths = []
    for i in range(n):
        path = root / f"track-{i:03d}{ext}"
        write_track(path, synthesize(styles[i % 3], seconds, sr=RATE, seed=seed * 1000 + i), RATE)
        paths.append(path)
    return paths


def subprocess_main() -> None:
    """Entry point of `run_cli`'s child: the CLI with the counting backend registered."""
    import backends
    from mrs_tui.cli import main

    backends.REGISTRY["counted"] = COUNTED_SPEC
    sys.exit(main(sys.argv[1:]))


def cli_command(*argv: str) -> list[str]:
    return [sys.executable, "-c", "from tests.faults_helpers import subprocess_main; subprocess_main()", *argv]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*argv), capture_output=True, text=True, timeout=timeout, env=child_env(**env), cwd=REPO
    )


def analysis_count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0
