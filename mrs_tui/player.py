"""Previews in the terminal: one `Player` owns the one sounddevice output stream.

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

from mrs_tui.audio import DecodedAudio, decode_excerpt, excerpt_window, resample

DEFAULT_PREVIEW_SECONDS = 30.0


class PlaybackUnavailable(Exception):
    """Previews cannot play here; the message says why, for the user."""


@dataclass(frozen=True)
class PlaybackEnded:
    track_id: int | None
    position: float  # seconds heard
    length: float  # seconds the preview would have lasted
    finished: bool  # reached the end (False: stopped by the user)


def load_preview(
    path: str, duration: float | None, seconds: float = DEFAULT_PREVIEW_SECONDS, position: str = "middle"
) -> DecodedAudio:
    """Decode the excerpt a preview plays (the same window the backends analyse by default)."""
    start, length = excerpt_window(duration, seconds, position)
    return decode_excerpt(path, start, length)


class Player:
    def __init__(self, on_ended: Callable[[PlaybackEnded], None] | None = None) -> None:
        self.on_ended = on_ended
        self._lock = threading.RLock()
        self._stream = None
        self._buffer = np.zeros(0, np.float32)
        self._rate = 0
        self._frame = 0
        self._track_id: int | None = None
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

    def _output_rate(self, wanted: int) -> int:
        sd = self._sd
        try:
            sd.check_output_settings(samplerate=wanted, channels=1, dtype="float32")
            return wanted
        except (sd.PortAudioError, ValueError):
            return int(sd.query_devices(kind="output")["default_samplerate"])

    def _callback(self, outdata, frames, time_info, status) -> None:
        start = self._frame
        chunk = self._buffer[start : start + frames]
        outdata[: len(chunk), 0] = chunk
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
            ended = PlaybackEnded(self._track_id, self.position, self.length, finished)
        if self.on_ended is not None:
            self.on_ended(ended)
        return ended

    def close(self) -> None:
        self.stop()
