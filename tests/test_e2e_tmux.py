"""The real `mrs-tui` program in a real terminal (tmux): from a freshly generated library to a
played queue, an explained suggestion and an exported playlist.

Keys go in with `tmux send-keys`; what the user would see is read back with `capture-pane`,
polled until the expected text appears (a loaded machine only makes it slower). Sound goes to
ALSA's `file` plugin, as in test_playback.py, so previews really play through PortAudio.
"""

from __future__ import annotations

import ctypes.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrs_tui.store import Store
from tests.conftest import make_library

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 120, 36
pytestmark = [
    pytest.mark.slow,
    pytest.mark.playback,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
    pytest.mark.skipif(ctypes.util.find_library("portaudio") is None, reason="PortAudio is not installed"),
]


class Terminal:
    """One tmux server of our own (its own socket), one window running one command."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, env=self.env, timeout=30
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, argv: list[str]) -> None:
        env_words = [f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k.startswith(("MRS_TUI_", "PYTHON"))]
        command = " ".join(["env", *env_words, *map(shlex.quote, argv), "; sleep 600"])
        self.tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", "e2e", command)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "e2e", key)
            time.sleep(0.15)  # one key per frame, as a person types

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared on screen; the screen shows:\n{shown}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.tmux("kill-server", check=False)


def program() -> list[str]:
    """The installed `mrs-tui` entry point of this interpreter's environment (else `python -m mrs_tui`)."""
    entry = Path(sys.executable).with_name("mrs-tui")
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "mrs_tui"]


def plays(db: Path) -> list[tuple[str, str]]:
    """(title, event) of every play in the database, oldest first."""
    store = Store.open(db)
    try:
        titles = {t.id: t.title for t in store.tracks()}
        return [(titles[p.track_id], p.event) for p in store.plays()]
    finally:
        store.close()


@pytest.fixture
def terminal(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "alsa").mkdir(parents=True)
    conf = f'pcm.!default {{\n  type file\n  slave.pcm "null"\n  file "{tmp_path / "sound.raw"}"\n  format "raw"\n}}\n'
    (home / ".asoundrc").write_text(conf)
    (home / ".config" / "alsa" / "asoundrc").write_text(conf)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),  # this checkout's code
        "MRS_TUI_BACKEND": "mfcc",
        "MRS_TUI_PREVIEW_SECONDS": "1.5",
        "TERM": "xterm-256color",
    }
    term = Terminal(tmp_path / "tmux.sock", env)
    yield term
    term.stop()


def test_a_fresh_library_to_a_played_queue_an_explanation_and_an_exported_playlist(tmp_path, terminal):
    music = tmp_path / "music"
    make_library(music, styles=("techno", "piano", "chiptune"), per_style=2, seconds=3.0, formats=(".flac", ".ogg"))
    db = tmp_path / "library.db"
    terminal.start([*program(), "--db", str(db), str(music)])

    terminal.wait_for("6 tracks · 6 analysed")

    # Three tracks into the queue (z), then n plays it: each 1.5-s preview runs out by itself.
    terminal.keys("g", "z", "j", "z", "j", "z")
    terminal.wait_for("3 up next")
    queued = [line for line in terminal.screen().splitlines() if "queued:" in line]
    assert queued, "each z says what it queued"
    terminal.keys("n")
    deadline = time.monotonic() + 120
    while sum(event == "complete" for _title, event in plays(db)) < 3:
        assert time.monotonic() < deadline, f"the queue did not play through: {plays(db)}"
        time.sleep(0.5)
    history = plays(db)
    store = Store.open(db)
    path_of = {t.title: Path(t.path).resolve() for t in store.tracks()}
    store.close()
    assert [event for _t, event in history] == ["play", "complete"] * 3
    terminal.keys("2")
    shown = terminal.wait_for("queue: 0 up next")
    played_titles = [title for title, event in history if event == "complete"]
    for title in played_titles:
        assert title in shown
    assert (tmp_path / "sound.raw").stat().st_size > 0  # the previews reached the audio device

    # Why a suggestion is there: w on the highlighted suggestion.
    terminal.keys("1", "Tab", "w")
    shown = terminal.wait_for("Why this track")
    terminal.wait_for("nearest of what you played")
    terminal.keys("Escape")

    # The queue as a playlist, then exported by the command line from the same database.
    terminal.keys("2", "C-s")
    terminal.wait_for("Save the queue (3 tracks) as playlist")
    terminal.keys(*"evening", "Enter")
    terminal.wait_for("saved 3 tracks as playlist 'evening'")
    terminal.keys("q")
    deadline = time.monotonic() + 60
    while "queue:" in terminal.screen() or "mrs-tui" in terminal.screen():
        assert time.monotonic() < deadline, "q did not quit"
        time.sleep(0.3)

    exported = tmp_path / "evening.m3u8"
    done = subprocess.run(
        [*program(), "--db", str(db), "playlist", "export", "evening", str(exported)],
        env=terminal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = exported.read_text(encoding="utf-8").splitlines()
    entries = [line for line in lines if line and not line.startswith("#")]
    assert [(exported.parent / entry).resolve() for entry in entries] == [path_of[t] for t in played_titles]
    extinf = [line for line in lines if line.startswith("#EXTINF")]
    assert [any(title in line for title in played_titles) for line in extinf] == [True] * 3
    store = Store.open(db)
    try:
        saved = store.playlist_track_ids(store.playlist("evening").id)
        assert [store.track(track_id).title for track_id in saved] == played_titles  # the queue, in order
    finally:
        store.close()
