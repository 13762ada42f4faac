"""Diversity rules for the queue and radio: what keeps a mix from being "too samey".

Peer users' top complaint about similarity radios is the same artist or album over and over,
the same song twice (two rips of one recording) and tracks heard an hour ago. Each rule here
addresses one of these, and every admitted track carries the sentence that says which rules it
passed, so its explanation can show *why it was let through*:

- at most `artist_cap` tracks per artist and `album_cap` per album within any `window`
  consecutive tracks (what was just played plus what is queued);
- no duplicates: never the same content hash twice in the window or the queue;
- no near-duplicates: never an embedding cosine above `near_duplicate_cosine` to a track in
  the window or the queue (the same song in two rips, a remaster); the radio takes cosines
  around the catalogue's mean vector, so backends whose raw features share a large common
  component (MFCC means) do not make every pair look alike;
- nothing played in the last `recent_hours` hours;
- exploration: `greedy` takes the best-ranked admissible candidate among the top `top_k`;
  `sample` draws from the top `top_k` with probabilities softmax(score / `temperature`).

Artists are compared after the import matcher's normalisation ("A feat. B" is A).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mrs_tui.errors import UserError
from mrs_tui.imports.matching import normalise_album, normalise_artist

EXPLORATION_MODES = ("greedy", "sample")


@dataclass(frozen=True)
class DiversityRules:
    artist_cap: int = 2
    album_cap: int = 1
    window: int = 10
    no_duplicates: bool = True
    near_duplicate_cosine: float = 0.98  # 1.0 or more: off
    recent_hours: float = 2.0  # 0: off
    exploration: str = "greedy"
    top_k: int = 50
    temperature: float = 0.3

    def __post_init__(self) -> None:
        if self.exploration not in EXPLORATION_MODES:
            raise ValueError(
                f"diversity_exploration must be one of {', '.join(EXPLORATION_MODES)}, not {self.exploration!r}"
            )
        for name in ("artist_cap", "album_cap", "window", "top_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"diversity_{name} must be a whole number of at least 1")
        if self.exploration == "sample" and self.temperature <= 0:
            raise ValueError("diversity_temperature must be above 0 when diversity_exploration is 'sample'")

    @classmethod
    def off(cls) -> DiversityRules:
        """No rule holds anything back (for comparison and tests)."""
        return cls(artist_cap=10**6, album_cap=10**6, no_duplicates=False, near_duplicate_cosine=2.0, recent_hours=0.0)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings) -> DiversityRules:
        """The rules of the config file's ``diversity_*`` keys; a bad value names its key."""
        values = {name: getattr(settings, f"diversity_{name}") for name in cls.__dataclass_fields__}
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise UserError(f"diversity settings: {exc} (keys diversity_*)", "fix the config file") from exc


@dataclass(frozen=True, slots=True)
class TrackFacts:
    """What the rules look at for one track."""

    track_id: int
    artist: str = ""  # normalised; "" when unknown (then no artist cap applies)
    album: str = ""
    content_hash: str | None = None
    vector: np.ndarray | None = None  # L2-normalised embedding
    last_played: float | None = None  # Unix seconds of the last positive play or skip

    @classmethod
    def of(cls, track, vector: np.ndarray | None = None, last_played: float | None = None) -> TrackFacts:
        artist = normalise_artist(track.artist) if track.artist else ""
        album = f"{artist}|{normalise_album(track.album)}" if track.album else ""
        return cls(track.id, artist, album, track.content_hash, vector, last_played)


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    rule: str  # admitted: the rules it passed; held back: the rule that held it
    held_by: str | None = None  # "artist", "album", "duplicate", "near-duplicate", "recent", "skipped"


@dataclass(frozen=True, slots=True)
class Pick:
    facts: TrackFacts
    score: float
    rule: str  # every rule it passed and how it was chosen


class DiversityFilter:
    def __init__(self, rules: DiversityRules, *, rng: np.random.Generator | None = None) -> None:
        self.rules = rules
        self.rng = rng or np.random.default_rng()

    def check(
        self,
        candidate: TrackFacts,
        context: Sequence[TrackFacts],
        now: float,
        *,
        held_artists: Counter | None = None,
    ) -> Verdict:
        """Would `candidate` be allowed after `context` (recent plays then the queue, oldest first)?"""
        r = self.rules
        recent = context[-(r.window - 1) :] if r.window > 1 else []
        passed = []
        if held_artists and candidate.artist and held_artists[candidate.artist] >= 2:
            return Verdict(False, f"you skipped {candidate.artist} {held_artists[candidate.artist]} times", "skipped")
        if candidate.artist:
            same = sum(1 for t in recent if t.artist == candidate.artist)
            if same >= r.artist_cap:
                return Verdict(False, f"artist already {same}× in the last {r.window}", "artist")
            passed.append(f"artist {same + 1}/{r.artist_cap} in {r.window}")
        if candidate.album:
            same = sum(1 for t in recent if t.album == candidate.album)
            if same >= r.album_cap:
                return Verdict(False, f"album already {same}× in the last {r.window}", "album")
            passed.append(f"album {same + 1}/{r.album_cap}")
        if r.no_duplicates and candidate.content_hash:
            if any(t.content_hash == candidate.content_hash for t in context):
                return Verdict(False, "the same file content is already queued or just played", "duplicate")
            passed.append("no copy queued")
        if r.near_duplicate_cosine < 1.0 and candidate.vector is not None:
            others = [t.vector for t in context if t.vector is not None and t.track_id != candidate.track_id]
            if others:
                nearest = float(np.max(np.stack(others) @ candidate.vector))
                if nearest > r.near_duplicate_cosine:
                    return Verdict(
                        False,
                        f"cosine {nearest:.3f} to a queued track (> {r.near_duplicate_cosine:g})",
                        "near-duplicate",
                    )
                passed.append(f"nearest queued cosine {nearest:.2f} ≤ {r.near_duplicate_cosine:g}")
        if r.recent_hours > 0:
            if candidate.last_played is not None and now - candidate.last_played < r.recent_hours * 3600:
                ago = (now - candidate.last_played) / 3600
                return Verdict(False, f"played {ago:.1f} h ago (< {r.recent_hours:g} h)", "recent")
            passed.append(f"not played in {r.recent_hours:g} h")
        return Verdict(True, ", ".join(passed) or "no rule applies")

    def select(
        self,
        ranked: Sequence[tuple[TrackFacts, float]],
        context: Sequence[TrackFacts],
        n: int,
        now: float,
        *,
        held_artists: Counter | None = None,
        pool_size: int | None = None,
    ) -> tuple[list[Pick], Counter]:
        """Up to `n` picks from `ranked` (best first); returns them and why the others were held back.

        Candidates come from the best `pool_size` (default `top_k`); the radio widens it when
        the rules hold back the whole top.
        """
        r = self.rules
        pool = list(ranked[: pool_size or r.top_k])
        context = list(context)
        picks: list[Pick] = []
        held: Counter = Counter()
        order = self._order(pool)
        for position, probability in order:
            if len(picks) == n:
                break
            facts, score = pool[position]
            verdict = self.check(facts, context, now, held_artists=held_artists)
            if not verdict.admitted:
                held[verdict.held_by] += 1
                continue
            how = (
                f"rank {position + 1} of {len(pool)}"
                if probability is None
                else f"drawn from the top {len(pool)} at temperature {r.temperature:g} (p={probability:.2f})"
            )
            picks.append(Pick(facts, score, f"{verdict.rule}; {how}"))
            context.append(facts)
        return picks, held

    def _order(self, pool: Sequence[tuple[TrackFacts, float]]) -> list[tuple[int, float | None]]:
        """The order candidates are considered in, with their draw probability when sampling."""
        if self.rules.exploration == "greedy" or len(pool) <= 1:
            return [(i, None) for i in range(len(pool))]
        scores = np.array([s for _, s in pool], np.float64)
        logits = (scores - scores.max()) / self.rules.temperature
        weights = np.exp(logits)
        probabilities = weights / weights.sum()
        # a weighted draw without replacement of the whole pool (Efraimidis-Spirakis keys)
        keys = np.log(self.rng.random(len(pool))) / np.maximum(probabilities, 1e-300)
        return [(int(i), float(probabilities[i])) for i in np.argsort(-keys)]
