"""Playback in the terminal: one `Player` owns the one sounddevice output stream.

It plays previews (the excerpt the backends analyse) or whole tracks, with pause/resume, seek,
volume and the elapsed/total time the player bar shows. Pausing keeps the stream open and
sends silence, so resuming is instant and the device is not re-negotiated. What counts as
*heard* for the play/skip rule is the audio actually sent while not paused: seeking to the
end of a track does not make it a full listen.

PortAudio is optional at run time. `Player.check()` says, in one sentence, why previews are
off — PortAudio missing, no output device, the device refusing every rate — and the app
keeps working without them. Samples are handed to PortAudio from a callback reading a
preloaded buffer, so the UI thread never blocks on audio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mrs_tui.audio import DecodedAudio, decode_excerpt, decode_file, excerpt_window, resample

DEFAULT_PREVIEW_SECONDS = 30.0
PLAYBACK_MODES = ("preview", "full")
MAX_VOLUME = 1.0


class PlaybackUnavailable(Exception):
    """Previews cannot play here; the message says why, for the user."""


@dataclass(frozen=True)
class PlaybackEnded:
    track_id: int | None
    position: float  # seconds heard (sent to the device while not paused)
    length: float  # seconds the preview or track would have lasted
    finished: bool  # played to the end, at least half of it heard (False: stopped, or skipped through by seeking)
    stopped_at: float = 0.0  # where in the preview or track it stopped, seconds
    reached_end: bool = False  # the audio ran out by itself (the queue moves on)


@dataclass(frozen=True)
class PlaybackStatus:
    track_id: int | None
    elapsed: float
    total: float
    paused: bool
    volume: float
    playing: bool

    def text(self) -> str:
        return f"{_clock(self.elapsed)} / {_clock(self.total)}"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def load_preview(
    path: str, duration: float | None, seconds: float = DEFAULT_PREVIEW_SECONDS, position: str = "middle"
) -> DecodedAudio:
    """Decode the excerpt a preview plays (the same window the backends analyse by default)."""
    start, length = excerpt_window(duration, seconds, position)
    return decode_excerpt(path, start, length)


def load_playback(
    path: str,
    duration: float | None,
    mode: str = "preview",
    seconds: float = DEFAULT_PREVIEW_SECONDS,
    position: str = "middle",
) -> DecodedAudio:
    """The audio to play: a preview excerpt, or the whole track (`mode="full"`)."""
    if mode not in PLAYBACK_MODES:
        raise ValueError(f"playback mode must be one of {', '.join(PLAYBACK_MODES)}, not {mode!r}")
    if mode == "full":
        return decode_file(path)
    return load_preview(path, duration, seconds, position)


class Player:
    def __init__(self, on_ended: Callable[[PlaybackEnded], None] | None = None) -> None:
        self.on_ended = on_ended
        self._lock = threading.RLock()
        self._stream = None
        self._buffer = np.zeros(0, np.float32)
        self._rate = 0
        self._frame = 0
        self._track_id: int | None = None
        self._paused = False
        self._volume = MAX_VOLUME
        self._heard_frames = 0
        self._reported = True
        self._sd = None
        self.unavailable_reason: str | None = None

    # -- availability --------------------------------------------------------------------------

    def check(self) -> str | None:
        """None when previews can play, else the reason they cannot (also kept in `unavailable_reason`)."""
        if self._sd is not None:
            return None
        try:
            import sounddevice as sd
        except OSError as exc:  # the Python package is there, the PortAudio library is not
            self.unavailable_reason = (
                f"previews are off: the PortAudio library is missing ({exc}); "
                "install it with `sudo apt-get install libportaudio2`"
            )
            return self.unavailable_reason
        except ImportError:
            self.unavailable_reason = "previews are off: the sounddevice package is not installed"
            return self.unavailable_reason
        try:
            sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            self.unavailable_reason = f"previews are off: no audio output device ({exc})"
            return self.unavailable_reason
        self._sd = sd
        self.unavailable_reason = None
        return None

    @property
    def available(self) -> bool:
        return self.check() is None

    # -- state -----------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._stream is not None and self._stream.active

    @property
    def track_id(self) -> int | None:
        return self._track_id

    @property
    def position(self) -> float:
        return self._frame / self._rate if self._rate else 0.0

    @property
    def length(self) -> float:
        return len(self._buffer) / self._rate if self._rate else 0.0

    @property
    def heard(self) -> float:
        return self._heard_frames / self._rate if self._rate else 0.0

    @property
    def paused(self) -> bool:
        return self._paused and self.playing

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = float(min(MAX_VOLUME, max(0.0, round(value, 3))))

    def status(self) -> PlaybackStatus:
        return PlaybackStatus(self._track_id, self.position, self.length, self.paused, self._volume, self.playing)

    # -- control -----------------------------------------------------------------------------------

    def play(self, samples: np.ndarray, sample_rate: int, *, track_id: int | None = None) -> None:
        """Start playing mono float32 `samples`; stops (and reports) whatever was playing."""
        reason = self.check()
        if reason is not None:
            raise PlaybackUnavailable(reason)
        sd = self._sd
        self.stop()
        rate = self._output_rate(sample_rate)
        if rate != sample_rate:
            samples = resample(samples, sample_rate, rate)
        with self._lock:
            self._buffer = np.ascontiguousarray(samples, dtype=np.float32)
            self._rate = rate
            self._frame = 0
            self._heard_frames = 0
            self._paused = False
            self._track_id = track_id
            self._reported = False
            try:
                self._stream = sd.OutputStream(
                    samplerate=rate,
                    channels=1,
                    dtype="float32",
                    callback=self._callback,
                    finished_callback=self._finished,
                )
                self._stream.start()
            except sd.PortAudioError as exc:
                self._stream = None
                self._reported = True
                raise PlaybackUnavailable(f"previews are off: the audio device refused to play ({exc})") from exc

    def stop(self) -> PlaybackEnded | None:
        """Stop playback; returns what was heard (None when nothing was playing)."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is None:
            return None
        stream.stop()  # runs the finished callback, which reports
        stream.close()
        return self._report(finished=False)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def toggle_pause(self) -> bool:
        """Pause or resume; returns whether it is paused now (False when nothing plays)."""
        if not self.playing:
            return False
        self._paused = not self._paused
        return self._paused

    def seek(self, delta: float) -> float:
        """Jump `delta` seconds forward (negative: back); returns the new position."""
        return self.seek_to(self.position + delta)

    def seek_to(self, seconds: float) -> float:
        with self._lock:
            if not self._rate:
                return 0.0
            # never past the last frame: the end is reached by playing, and reported then
            self._frame = int(min(max(0.0, seconds) * self._rate, max(0, len(self._buffer) - 1)))
            return self.position

    def change_volume(self, delta: float) -> float:
        self.volume = self._volume + delta
        return self._volume

    def _output_rate(self, wanted: int) -> int:
        sd = self._sd
        try:
            sd.check_output_settings(samplerate=wanted, channels=1, dtype="float32")
            return wanted
        except (sd.PortAudioError, ValueError):
            return int(sd.query_devices(kind="output")["default_samplerate"])

    def _callback(self, outdata, frames, time_info, status) -> None:
        if self._paused:
            outdata.fill(0.0)
            return
        start = self._frame
        chunk = self._buffer[start : start + frames]
        if self._volume == MAX_VOLUME:
            outdata[: len(chunk), 0] = chunk
        else:
            np.multiply(chunk, self._volume, out=outdata[: len(chunk), 0])
        self._heard_frames += len(chunk)
        if len(chunk) < frames:
            outdata[len(chunk) :, 0] = 0.0
            self._frame = len(self._buffer)
            raise self._sd.CallbackStop
        self._frame = start + frames

    def _finished(self) -> None:
        finished = self._frame >= len(self._buffer)
        if finished:
            self._report(finished=True)

    def _report(self, *, finished: bool) -> PlaybackEnded | None:
        with self._lock:
            if self._reported:
                return None
            self._reported = True
            heard, length = self.heard, self.length
            ended = PlaybackEnded(
                self._track_id, heard, length, finished and heard >= length / 2, self.position, reached_end=finished
            )
        if self.on_ended is not None:
            self.on_ended(ended)
        return ended

    def close(self) -> None:
        self.stop()
