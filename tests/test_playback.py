"""A real preview through PortAudio: ALSA's default device is pointed at its `file` plugin,
so the bytes PortAudio delivers land in a file we can read back and compare.

Runs in a subprocess because PortAudio reads the ALSA configuration once per process.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.playback


def _portaudio_present() -> bool:
    return ctypes.util.find_library("portaudio") is not None


@pytest.fixture
def alsa_to_file(tmp_path):
    raw = tmp_path / "out.raw"
    conf = f"""
pcm.!default {{
  type file
  slave.pcm "null"
  file "{raw}"
  format "raw"
}}
"""
    home = tmp_path / "home"
    (home / ".config" / "alsa").mkdir(parents=True)
    (home / ".asoundrc").write_text(conf)
    (home / ".config" / "alsa" / "asoundrc").write_text(conf)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return raw, env


@pytest.mark.skipif(not _portaudio_present(), reason="PortAudio is not installed (apt-get install libportaudio2)")
def test_preview_bytes_arrive_at_the_audio_device(tmp_path, alsa_to_file):
    raw, env = alsa_to_file
    script = textwrap.dedent(
        """
        import sys, time
        import numpy as np
        from mrs_tui.player import Player
        ended = []
        player = Player(on_ended=ended.append)
        reason = player.check()
        if reason:
            sys.exit("unavailable: " + reason)
        rate = 48000
        t = np.arange(rate // 2) / rate
        tone = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        player.play(tone, rate, track_id=7)
        deadline = time.time() + 20
        while not ended and time.time() < deadline:
            time.sleep(0.05)
        print(ended[0].track_id, ended[0].finished, round(ended[0].length, 3))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "True", "0.5"]
    data = np.frombuffer(raw.read_bytes(), dtype=np.float32)
    rate = 48000
    expected = (0.25 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate)).astype(np.float32)
    assert len(data) >= len(expected)
    # Align on the first audible sample (the device may deliver leading silence).
    start = int(np.flatnonzero(np.abs(data) > 1e-6)[0] - np.flatnonzero(np.abs(expected) > 1e-6)[0])
    np.testing.assert_allclose(data[start : start + len(expected)], expected, atol=1e-6)


@pytest.mark.skipif(not _portaudio_present(), reason="PortAudio is not installed")
def test_without_an_output_device_previews_are_off_with_a_reason(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "alsa").mkdir(parents=True)
    broken = "pcm.!default { type hw card 99 }\nctl.!default { type hw card 99 }\n"
    (home / ".asoundrc").write_text(broken)
    (home / ".config" / "alsa" / "asoundrc").write_text(broken)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    script = "from mrs_tui.player import Player; print(Player().check())"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("previews are off:")


def test_missing_portaudio_library_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    from mrs_tui.player import PlaybackUnavailable, Player

    player = Player()
    reason = player.check()
    assert "PortAudio" in reason and "libportaudio2" in reason
    with pytest.raises(PlaybackUnavailable):
        player.play(np.zeros(10, np.float32), 8000)


@pytest.mark.skipif(not _portaudio_present(), reason="PortAudio is not installed (apt-get install libportaudio2)")
def test_pause_seek_and_volume_reach_the_device(tmp_path, alsa_to_file):
    """The null device takes samples faster than real time, so the script acts on positions, not on sleeps."""
    raw, env = alsa_to_file
    script = textwrap.dedent(
        """
        import json, sys, time
        import numpy as np
        from mrs_tui.player import Player
        ended = []
        player = Player(on_ended=ended.append)
        if player.check():
            sys.exit("unavailable: " + player.check())
        rate = 48000
        tone = (0.25 * np.sin(2 * np.pi * 440 * np.arange(120 * rate) / rate)).astype(np.float32)
        player.volume = 0.5
        player.play(tone, rate, track_id=9)
        player.pause()
        time.sleep(0.05)
        frozen = player.position
        time.sleep(0.3)
        still = player.position
        paused = player.status().paused
        player.seek_to(118.0)
        after_seek = player.position
        player.resume()
        deadline = time.time() + 30
        while not ended and time.time() < deadline:
            time.sleep(0.02)
        e = ended[0]
        print(json.dumps({"frozen": frozen, "still": still, "paused": paused, "after_seek": after_seek,
                          "heard": e.position, "length": e.length, "finished": e.finished,
                          "reached_end": e.reached_end, "stopped_at": e.stopped_at}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["paused"] is True
    assert result["frozen"] == result["still"] < 2.0  # nothing moved while paused
    assert result["after_seek"] == pytest.approx(118.0, abs=0.01)
    assert result["length"] == pytest.approx(120.0)
    # it ran out by itself, but most of it was skipped over by seeking: not a full listen
    assert (result["reached_end"], result["finished"]) == (True, False)
    assert result["heard"] == pytest.approx(result["frozen"] + 2.0, abs=0.1)
    data = np.frombuffer(raw.read_bytes(), dtype=np.float32)
    assert np.abs(data).max() == pytest.approx(0.125, abs=1e-3)  # volume 0.5 of a 0.25 tone
    silent = np.abs(data) < 1e-9
    # the pause: a long run of silence inside the tone (the tone itself is silent only at single samples)
    steps = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    runs = np.flatnonzero(steps == -1) - np.flatnonzero(steps == 1)
    assert runs.max() > 4800
    heard_samples = int((~silent).sum())
    assert heard_samples == pytest.approx(result["heard"] * 48000, rel=0.01)


def test_whole_tracks_or_previews(tmp_path):
    from mrs_tui.demo import STYLES, synthesize, write_track
    from mrs_tui.player import load_playback

    path = write_track(tmp_path / "long.flac", synthesize(STYLES[1], 12.0, sr=22050, seed=2), 22050)
    full = load_playback(str(path), 12.0, "full")
    preview = load_playback(str(path), 12.0, "preview", seconds=4.0)
    assert len(full.samples) / full.sample_rate == pytest.approx(12.0, abs=0.05)
    assert len(preview.samples) / preview.sample_rate == pytest.approx(4.0, abs=0.05)
    with pytest.raises(ValueError, match="playback mode"):
        load_playback(str(path), 12.0, "loud")


def test_status_text_shows_elapsed_and_total():
    from mrs_tui.player import PlaybackStatus

    assert PlaybackStatus(1, 65.4, 241.0, False, 1.0, True).text() == "1:05 / 4:01"
