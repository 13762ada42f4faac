"""Audio decoding, excerpt selection and resampling.

A file is decoded once per indexing pass: `decode_excerpt` reads only the window the
backends need (seeking, not decoding the whole file), downmixes to mono float32 at the
file's own rate, and `DecodedAudio.at(rate)` resamples once per target rate (soxr, high
quality) and caches the result, so several backends share one decode.

Excerpt selection (documented for users in README "How tracks are analysed"): the paper's
extraction scripts read the first 30 s of Music4All files, which are themselves 30-s
previews cut from the middle of songs. For full-length tracks we therefore take a window
centred in the track by default (`position="middle"`); ``clip_position = "start"`` in the
settings reproduces the scripts literally. Tracks shorter than the window are used whole.

libsndfile (through soundfile) reads wav/flac/ogg/opus/mp3; anything it cannot open
(m4a/aac, wma, ...) goes through FFmpeg's decoders via PyAV. Import cost is paid lazily:
this module imports neither at load time.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrs_tui.errors import AudioDecodeError

AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".wav",
        ".wave",
        ".aiff",
        ".aif",
        ".m4a",
        ".aac",
        ".mp4",
        ".wma",
        ".alac",
        ".wv",
        ".ape",
    }
)
# Formats libsndfile may reject but FFmpeg reads.
_FFMPEG_FIRST = frozenset({".m4a", ".aac", ".mp4", ".wma", ".alac", ".ape", ".wv"})


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    duration: float


@dataclass
class DecodedAudio:
    """Mono float32 samples of one excerpt at the file's rate, with per-rate resample cache."""

    samples: np.ndarray
    sample_rate: int
    offset: float = 0.0  # seconds into the file where `samples` start
    _resampled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def at(self, rate: int) -> np.ndarray:
        if rate == self.sample_rate:
            return self.samples
        if rate not in self._resampled:
            self._resampled[rate] = resample(self.samples, self.sample_rate, rate)
        return self._resampled[rate]

    def window(self, rate: int, start: float, seconds: float | None) -> np.ndarray:
        """Samples at `rate` from `start` (file time) for `seconds` (None: to the end)."""
        y = self.at(rate)
        first = max(0, round((start - self.offset) * rate))
        last = len(y) if seconds is None else min(len(y), first + round(seconds * rate))
        return y[first:last]


def resample(y: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    if rate_from == rate_to:
        return y
    import soxr

    return soxr.resample(y, rate_from, rate_to, quality="HQ").astype(np.float32, copy=False)


def excerpt_window(
    duration: float | None, seconds: float | None, position: str = "middle"
) -> tuple[float, float | None]:
    """(start, length) in seconds of the excerpt to analyse or preview."""
    if seconds is None or duration is None or duration <= seconds:
        return 0.0, seconds
    if position == "start":
        return 0.0, seconds
    if position != "middle":
        raise ValueError(f"unknown excerpt position {position!r}")
    return (duration - seconds) / 2.0, seconds


def probe(path: Path | str) -> AudioInfo:
    path = Path(path)
    _check_readable(path)
    try:
        return _probe_soundfile(path)
    except _NotForSoundfile:
        return _probe_ffmpeg(path)


def decode_excerpt(path: Path | str, start: float = 0.0, seconds: float | None = None) -> DecodedAudio:
    """Decode [start, start+seconds) of `path` to mono float32 at the file's sample rate.

    Raises AudioDecodeError with a short human reason (stored with the track).
    """
    path = Path(path)
    _check_readable(path)
    try:
        samples, rate = _decode_soundfile(path, start, seconds)
    except _NotForSoundfile:
        samples, rate = _decode_ffmpeg(path, start, seconds)
    if samples.size == 0:
        raise AudioDecodeError("no audio samples could be decoded")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("decoded audio contains NaN or infinite samples")
    return DecodedAudio(samples, rate, offset=start)


def decode_file(path: Path | str, seconds: float | None = None) -> DecodedAudio:
    return decode_excerpt(path, 0.0, seconds)


class _NotForSoundfile(Exception):
    pass


_AUDIO_MAGIC = (
    (b"RIFF", "wav"),
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
    (b"ID3", "mp3"),
    (b"FORM", "aiff"),
    (b"wvpk", "wavpack"),
    (b"MAC ", "ape"),
    (b"\x30\x26\xb2\x75", "wma"),
    (b"caff", "caf"),
    (b"RF64", "wav"),
    (b".snd", "au"),
)
_OTHER_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "a program"),
)


def sniff(head: bytes) -> str | None:
    """Audio container named by the first bytes, or None when they are not audio."""
    for magic, kind in _AUDIO_MAGIC:
        if head.startswith(magic):
            return kind
    if not head.strip(b"\0"):
        return "unknown"  # leading padding (some MP3 rippers): let the decoders decide
    if head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "mpeg"  # MPEG audio frame sync, or ADTS AAC
    return None


def _check_readable(path: Path) -> None:
    try:
        info = path.stat()
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):  # opening a FIFO would wait for a writer forever
            raise AudioDecodeError("not a regular file (a FIFO, socket or device)")
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError as exc:
        raise AudioDecodeError("file not found") from exc
    except OSError as exc:
        raise AudioDecodeError(f"cannot read file: {exc.strerror}") from exc
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    if sniff(head) is None:
        what = next((name for magic, name in _OTHER_MAGIC if head.startswith(magic)), None)
        if what is None and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
            what = "text"
        detail = f"it is {what}" if what else "its contents are not a known audio format"
        raise AudioDecodeError(f"not an audio file ({detail}, whatever the .{path.suffix.lstrip('.')} extension says)")


def _probe_soundfile(path: Path) -> AudioInfo:
    if path.suffix.lower() in _FFMPEG_FIRST:
        raise _NotForSoundfile
    import soundfile as sf

    try:
        info = sf.info(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _NotForSoundfile from exc
    return AudioInfo(int(info.samplerate), int(info.channels), float(info.duration))


def _decode_soundfile(path: Path, start: float, seconds: float | None) -> tuple[np.ndarray, int]:
    if path.suffix.lower() in _FFMPEG_FIRST:
        raise _NotForSoundfile
    import soundfile as sf

    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            rate = int(f.samplerate)
            first = int(round(start * rate))
            if first and f.seekable():
                f.seek(min(first, max(f.frames - 1, 0)))
            elif first:
                f.read(first, dtype="float32", always_2d=True)
            count = -1 if seconds is None else int(round(seconds * rate))
            data = f.read(count, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        message = str(exc)
        if "unknown format" in message.lower() or "format not recognised" in message.lower():
            raise _NotForSoundfile from exc
        raise AudioDecodeError(_libsndfile_reason(message, path)) from exc
    except RuntimeError as exc:  # libsndfile reports some truncations as plain runtime errors
        raise AudioDecodeError(_libsndfile_reason(str(exc), path)) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError("no audio frames (truncated or empty stream)")
    return data.mean(axis=1, dtype=np.float32), rate


def _libsndfile_reason(message: str, path: Path) -> str:
    # libsndfile messages start with the path; keep the reason only, in words a listener can act on.
    reason = (message.split(": ", 1)[-1] if ": " in message else message).strip()
    kind = path.suffix.lstrip(".").upper() or "audio"
    lowered = reason.lower()
    if "psf_fseek" in lowered or "lost sync" in lowered or "truncat" in lowered or "end of file" in lowered:
        return f"truncated or damaged {kind} file (it ends before its audio does)"
    if "possibly a pipe" in lowered or "not a regular file" in lowered:
        # The file exists and is regular (checked before): libsndfile found no audio where the header said.
        return f"damaged or not really a {kind} file: no audio could be read from it"
    return f"decoding failed: {reason}"


def _open_ffmpeg(path: Path):
    import av

    try:
        container = av.open(str(path))
    except av.error.InvalidDataError as exc:
        raise AudioDecodeError("not an audio file (no decoder recognises its contents)") from exc
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise AudioDecodeError(f"cannot open as audio: {reason}") from exc
    if not container.streams.audio:
        container.close()
        raise AudioDecodeError("no audio stream in the file")
    return container


def _probe_ffmpeg(path: Path) -> AudioInfo:
    container = _open_ffmpeg(path)
    try:
        stream = container.streams.audio[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return AudioInfo(int(stream.rate or 0), int(stream.channels or 0), float(duration or 0.0))
    finally:
        container.close()


def _decode_ffmpeg(path: Path, start: float, seconds: float | None) -> tuple[np.ndarray, int]:
    import av

    container = _open_ffmpeg(path)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        if start > 0:
            # Not seekable: decode from the top and drop what comes before start.
            with contextlib.suppress(av.error.FFmpegError):
                container.seek(int(start * 1_000_000), any_frame=False, backward=True)
        wanted = None if seconds is None else int(round(seconds * rate))
        chunks: list[np.ndarray] = []
        have = 0
        first_sample = int(round(start * rate))
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if data.dtype.kind in "iu":
                data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
            # planar (channels, n) or packed (1, n*channels)
            if frame.format.is_planar:
                mono = data.mean(axis=0)
            else:
                mono = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            frame_start = round(float(frame.pts * frame.time_base) * rate) if frame.pts is not None else None
            if frame_start is not None and frame_start < first_sample:
                skip = first_sample - frame_start
                if skip >= len(mono):
                    continue
                mono = mono[skip:]
            chunks.append(mono.astype(np.float32, copy=False))
            have += len(mono)
            if wanted is not None and have >= wanted:
                break
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"decoding failed: {exc}") from exc
    finally:
        container.close()
    if not chunks:
        raise AudioDecodeError("no audio frames (truncated or empty stream)")
    samples = np.concatenate(chunks)
    if wanted is not None:
        samples = samples[:wanted]
    return samples, rate
