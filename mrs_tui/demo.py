"""A small demo library: generated music in clearly different styles, with real tags.

Nothing here is recorded audio: six synthesised "genres" (drone, techno, chiptune, piano,
noise rock, plucked folk), four tracks each with per-track variation in key, tempo and
timbre, written as FLAC / Ogg Vorbis / MP3 / Opus / WAV with proper tags so a newcomer
sees the whole flow — scan, analysis, suggestions, previews — without music of their own.
The recipe (styles and their tags, tracks per style, length, formats) is data/demo/recipe.toml;
`write_track` is also what the test-suite uses to build its fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Style:
    name: str
    artist: str
    genre: str
    synth: Callable[[np.random.Generator, float, int], np.ndarray]


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(seconds * sr)) / sr


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _envelope(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    return np.minimum(t / max(attack, 1e-4), 1.0) * np.exp(-t / decay)


def _drone(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _t(seconds, sr)
    root = _midi(rng.integers(36, 48))
    y = np.zeros_like(t)
    for ratio, amp in ((1, 0.5), (1.5, 0.3), (2, 0.25), (3, 0.1)):
        wobble = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t)
        y += amp * np.sin(2 * np.pi * root * ratio * wobble * t)
    noise = np.convolve(rng.normal(0, 1, len(t)), np.ones(200) / 200, mode="same")
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(6, 12))
    return (y + 0.3 * noise) * swell


def _techno(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _t(seconds, sr)
    bpm = rng.uniform(120, 132)
    beat = 60 / bpm
    y = np.zeros_like(t)
    kick_len = int(0.25 * sr)
    k = np.arange(kick_len) / sr
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-k * 30)) * k) * np.exp(-k * 12)
    hat = rng.normal(0, 1, int(0.05 * sr)) * np.exp(-np.arange(int(0.05 * sr)) / sr * 80)
    hat = np.diff(hat, prepend=0)
    bass_note = _midi(rng.integers(33, 40))
    for i in range(int(seconds / beat)):
        start = int(i * beat * sr)
        end = min(start + kick_len, len(t))
        y[start:end] += kick[: end - start]
        off = int((i + 0.5) * beat * sr)
        end = min(off + len(hat), len(t))
        if off < len(t):
            y[off:end] += 0.3 * hat[: end - off]
    bass = 0.3 * np.sign(np.sin(2 * np.pi * bass_note * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * t / beat))
    return y + np.convolve(bass, np.ones(30) / 30, mode="same")


def _chiptune(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _t(seconds, sr)
    step = rng.uniform(0.06, 0.1)
    root = rng.integers(60, 72)
    chord = np.array([0, 4, 7, 12]) if rng.random() < 0.5 else np.array([0, 3, 7, 10])
    idx = (t / step).astype(int) % len(chord)
    freq = np.array([_midi(root + c) for c in chord])[idx]
    phase = np.cumsum(2 * np.pi * freq / sr)
    duty = rng.uniform(0.125, 0.5)
    lead = np.where((phase / (2 * np.pi)) % 1.0 < duty, 0.4, -0.4)
    bass_phase = np.cumsum(2 * np.pi * (freq / 4) / sr)
    tri = 0.3 * (2 * np.abs(2 * ((bass_phase / (2 * np.pi)) % 1.0) - 1) - 1)
    return lead + tri


def _piano(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    n = int(seconds * sr)
    y = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    root = rng.integers(48, 60)
    time = 0.0
    while time < seconds:
        note = root + scale[rng.integers(0, 7)] + 12 * rng.integers(0, 2)
        f = _midi(note)
        length = int(min(2.5, seconds - time) * sr)
        k = np.arange(length) / sr
        tone = sum(np.sin(2 * np.pi * f * h * k) / h**1.5 for h in range(1, 7))
        start = int(time * sr)
        y[start : start + length] += 0.35 * tone * _envelope(length, sr, 0.005, 0.6)
        time += rng.choice([0.25, 0.5, 0.75])
    return y


def _noise_rock(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _t(seconds, sr)
    root = _midi(rng.integers(40, 47))
    saw = sum(((t * root * r) % 1.0) * 2 - 1 for r in (1, 1.5, 2.0))
    dist = np.tanh(4 * saw)
    bursts = rng.normal(0, 1, len(t)) * (np.sin(2 * np.pi * t * rng.uniform(1, 3)) > 0.6)
    return 0.5 * dist + 0.3 * bursts


def _pluck(rng: np.random.Generator, period: int, length: int) -> np.ndarray:
    """Karplus-Strong plucked string: a noise burst through a damped, averaging delay line."""
    from scipy.signal import lfilter

    excitation = np.zeros(length)
    excitation[:period] = rng.uniform(-1, 1, period)
    feedback = np.zeros(period + 2)
    feedback[0] = 1.0
    feedback[period] = feedback[period + 1] = -0.996 * 0.5
    return lfilter([1.0], feedback, excitation)


def _folk(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    n = int(seconds * sr)
    y = np.zeros(n)
    chord = np.array([0, 7, 12, 16, 19]) + rng.integers(40, 50)
    strum = rng.uniform(0.45, 0.7)
    time = 0.0
    while time < seconds:
        for j, note in enumerate(chord):
            period = int(sr / _midi(note))
            length = int(min(1.5, seconds - time) * sr)
            if length <= period:
                continue
            out = _pluck(rng, period, length)
            start = int((time + 0.012 * j) * sr)
            end = min(start + length, n)
            y[start:end] += 0.25 * out[: end - start]
        time += strum
    return y


_SYNTHS = {
    "drone": _drone,
    "techno": _techno,
    "chiptune": _chiptune,
    "piano": _piano,
    "noise_rock": _noise_rock,
    "folk": _folk,
}


def _read_recipe() -> dict:
    """data/demo/recipe.toml: the styles, their tags, how many tracks, how long, which formats."""
    import tomllib

    from mrs_tui.paths import shipped_data

    return tomllib.loads(shipped_data("demo", "recipe.toml").read_text(encoding="utf-8"))


RECIPE = _read_recipe()
STYLES = [Style(s["synth"], s["artist"], s["genre"], _SYNTHS[s["synth"]]) for s in RECIPE["style"]]
DEMO_RATE = RECIPE["sample_rate"]


def synthesize(style: Style | str, seconds: float, *, sr: int = DEMO_RATE, seed: int = 0) -> np.ndarray:
    if isinstance(style, str):
        style = next(s for s in STYLES if s.name == style)
    y = style.synth(np.random.default_rng(seed), seconds, sr)
    y = y - y.mean()
    peak = np.max(np.abs(y)) or 1.0
    fade = min(len(y) // 4, int(0.05 * sr))
    ramp = np.linspace(0, 1, fade) if fade else np.zeros(0)
    y[:fade] *= ramp
    y[len(y) - fade :] *= ramp[::-1]
    return (0.7 * y / peak).astype(np.float32)


def write_track(path: Path, samples: np.ndarray, sr: int, tags: dict[str, str] | None = None) -> Path:
    """Write audio in the format the extension names, then tag it with mutagen."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext in (".m4a", ".aac", ".mp4"):
        _write_with_ffmpeg(path, samples, sr)
    else:
        fmt, subtype = {
            ".wav": ("WAV", "PCM_16"),
            ".flac": ("FLAC", "PCM_16"),
            ".ogg": ("OGG", "VORBIS"),
            ".opus": ("OGG", "OPUS"),
            ".mp3": ("MP3", "MPEG_LAYER_III"),
        }[ext]
        if ext == ".opus" and sr not in (8000, 12000, 16000, 24000, 48000):
            from mrs_tui.audio import resample

            samples, sr = resample(samples, sr, 48000), 48000
        sf.write(str(path), samples, sr, format=fmt, subtype=subtype)
    if tags:
        tag_file(path, tags)
    return path


def _write_with_ffmpeg(path: Path, samples: np.ndarray, sr: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4" if path.suffix.lower() != ".aac" else "adts") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame_size = 1024
        pcm = np.asarray(samples, np.float32)
        for start in range(0, len(pcm), frame_size):
            chunk = pcm[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def tag_file(path: Path, tags: dict[str, str]) -> None:
    import mutagen
    from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1

    ext = path.suffix.lower()
    if ext == ".wav":
        from mutagen.wave import WAVE

        audio = WAVE(path)
        if audio.tags is None:
            audio.add_tags()
        frames = {"title": TIT2, "artist": TPE1, "album": TALB, "genre": TCON, "year": TDRC}
        for key, value in tags.items():
            audio.tags.add(frames[key](encoding=3, text=[value]))
        audio.save()
        return
    if ext == ".mp3":
        try:
            ID3(path)
        except mutagen.id3.ID3NoHeaderError:
            ID3().save(path)
    audio = mutagen.File(path, easy=True)
    if audio is None:
        raise ValueError(f"mutagen cannot tag {path}")
    if audio.tags is None:
        audio.add_tags()
    for key, value in tags.items():
        audio[("date" if key == "year" else key)] = [value]
    audio.save()


DEMO_FORMATS = tuple(RECIPE["formats"])


def create_demo_library(
    folder: Path,
    *,
    tracks_per_style: int = RECIPE["tracks_per_style"],
    seconds: float = RECIPE["seconds"],
    sr: int = DEMO_RATE,
) -> list[Path]:
    """Write the demo library into `folder` (existing files are kept, so this is idempotent)."""
    paths = []
    for s_index, style in enumerate(STYLES):
        for n in range(tracks_per_style):
            ext = DEMO_FORMATS[(s_index + n) % len(DEMO_FORMATS)]
            path = folder / style.artist / f"{n + 1:02d} {style.genre} Study {n + 1}{ext}"
            if not path.exists():
                samples = synthesize(style, seconds, sr=sr, seed=1000 * s_index + n)
                tags = {
                    "title": f"{style.genre} Study {n + 1}",
                    "artist": style.artist,
                    "album": f"{style.genre} Sketches",
                    "genre": style.genre,
                    "year": RECIPE["year"],
                }
                write_track(path, samples, sr, tags)
            paths.append(path)
    return paths


# -- a generated listening history over the demo library ---------------------------------------

DEMO_SOURCE = "demo"  # the `sessions.source` of generated sessions: what `remove_demo_history` deletes
DAY = 86400.0


@dataclass(frozen=True)
class Mood:
    """A planted listener mood: sessions keep to its styles, and it has favourite tracks."""

    name: str
    styles: tuple[str, ...]
    share: float  # of all sessions


MOODS = (
    Mood("late night", ("drone", "piano"), 0.4),
    Mood("workout", ("techno", "chiptune"), 0.35),
    Mood("garage", ("noise_rock", "folk"), 0.25),
)


@dataclass(frozen=True)
class DemoHistory:
    sessions: int
    plays: int
    likes: int
    skips: int
    generated: bool  # False: a generated history was already there and was kept

    def describe(self) -> str:
        verb = "wrote" if self.generated else "kept the"
        return (
            f"{verb} generated demo history: {self.sessions} sessions, {self.plays} plays, "
            f"{self.likes} likes, {self.skips} skips (remove it with: mrs-tui demo --remove-history)"
        )


def _style_of(track) -> str | None:
    for style in STYLES:
        if track.genre == style.genre and track.artist == style.artist:
            return style.name
    return None


def write_demo_history(store, *, weeks: int = 9, seed: int = 0, now: float | None = None) -> DemoHistory:
    """Generate a few weeks of listening over the demo library's tracks in `store`.

    Sessions follow one of the `MOODS` (its styles, favourites played most, Zipf-like), with an
    occasional off-mood track that is skipped and likes for favourites. The newest track of
    each style is "released" during the last three weeks, so an evaluation has cold targets.
    The history ends a day before `now`, so the user's own next session is a new one. Every
    session is marked with source "demo"; an existing generated history is kept as it is.
    """
    import time

    existing = store.session_counts_by_source().get(DEMO_SOURCE)
    if existing:
        return DemoHistory(existing["sessions"], existing["plays"], existing["likes"], existing["skips"], False)
    by_style: dict[str, list] = {}
    for track in store.tracks(status="ok"):
        style = _style_of(track)
        if style is not None:
            by_style.setdefault(style, []).append(track)
    for tracks in by_style.values():
        tracks.sort(key=lambda t: t.title or "")
    if not by_style:
        return DemoHistory(0, 0, 0, 0, False)
    rng = np.random.default_rng(seed)
    end = (time.time() if now is None else now) - DAY
    start = end - weeks * 7 * DAY
    release = {t.id: (end - 21 * DAY + rng.uniform(0, 7 * DAY)) for tracks in by_style.values() for t in tracks[-1:]}
    moods = [m for m in MOODS if any(s in by_style for s in m.styles)]
    shares = np.array([m.share for m in moods]) / sum(m.share for m in moods)
    # Each mood's favourites: a fixed order of its tracks, played with Zipf-like weights.
    favourites = {}
    for mood in moods:
        tracks = [t for s in mood.styles for t in by_style.get(s, [])]
        favourites[mood.name] = [tracks[i] for i in rng.permutation(len(tracks))]
    counts = {"sessions": 0, "plays": 0, "likes": 0, "skips": 0}
    day = start
    with store.write():
        while day < end:
            for _ in range(int(rng.integers(1, 3))):
                at = day + rng.uniform(8, 22) * 3600
                if at >= end:
                    continue
                mood = moods[int(rng.choice(len(moods), p=shares))]
                pool = [t for t in favourites[mood.name] if release.get(t.id, start) <= at]
                others = [t for s, tracks in by_style.items() if s not in mood.styles for t in tracks]
                if len(pool) < 2:
                    continue
                weights = 1.0 / (1.0 + np.arange(len(pool))) ** 0.7
                length = min(len(pool), int(rng.integers(3, 7)))
                picks = rng.choice(len(pool), size=length, replace=False, p=weights / weights.sum())
                session = store.new_session(at, source=DEMO_SOURCE)
                counts["sessions"] += 1
                for rank, index in enumerate(picks):
                    if others and rank > 0 and rng.random() < 0.15:
                        stray = others[int(rng.integers(len(others)))]
                        store.add_play(session, stray.id, "play", at, 0.0)
                        store.add_play(session, stray.id, "skip", at + 6, 6.0)
                        counts["plays"] += 1
                        counts["skips"] += 1
                        at += 10
                    track = pool[int(index)]
                    store.add_play(session, track.id, "play", at, 0.0)
                    listened = float(rng.uniform(150, 260))
                    store.add_play(session, track.id, "complete", at + listened, listened)
                    counts["plays"] += 1
                    if int(index) < 2 and rng.random() < 0.3:
                        store.add_play(session, track.id, "like", at + listened + 1)
                        counts["likes"] += 1
                    at += listened + rng.uniform(2, 20)
            day += DAY
    return DemoHistory(counts["sessions"], counts["plays"], counts["likes"], counts["skips"], True)


def remove_demo_history(store) -> int:
    """Delete every generated session and its plays; the user's own listening is untouched."""
    return store.delete_sessions(source=DEMO_SOURCE)


def demo_database(folder: Path, default_db: Path, own_db: Path) -> tuple[Path, str | None]:
    """Where the demo keeps its tracks and history, and why when it is not the default database.

    The demo uses the database every other command uses by default, so `mrs-tui history show`,
    `suggest` or `playlist list` act on what the demo showed. The one exception: a default
    database that already holds music from elsewhere (the user's own library) is left alone,
    and the demo uses `own_db`, the reason saying how to reach it.
    """
    from mrs_tui.store import Store

    if not default_db.exists():
        return default_db, None
    with Store.open(default_db) as store:
        elsewhere = len(store.tracks()) - len(store.tracks(under=str(Path(folder).resolve())))
    if elsewhere == 0:
        return default_db, None
    return own_db, (
        f"{default_db} holds {elsewhere} tracks of your own music, so the demo keeps its own database: "
        f"add --db {own_db} to a command (or set MRS_TUI_DB) to act on the demo"
    )
