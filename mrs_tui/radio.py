"""Radio: a queue that refills itself from a recommender, within the diversity rules.

Seeded by one track, several, or a playlist. When fewer than `refill_below` tracks are left
upcoming, `refill` asks the recommender for candidates around the seeds and everything
heard to the end (or liked) since the radio started, and queues `batch` of them that pass the
`DiversityRules`; each queued entry says why it was added and which rules let it through.
It learns as it goes: a completed or liked track joins the profile the next refill starts
from, a skipped or disliked one leaves it and never comes back in this radio, and an artist
skipped twice is held back.

A trainable recommender that has no trained model yet falls back to knn, and says so.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mrs_tui.diversity import DiversityFilter, DiversityRules, TrackFacts
from mrs_tui.errors import UserError
from mrs_tui.queue import PlayQueue, QueueEntry
from recommenders.base import Query

PROFILE_TRACKS = 20
# The model and track facts are reused between refills until new embeddings arrive or this many
# refills passed (a retrained model, a retagged file): refitting and re-reading on every refill
# would cost more than the whole rest of a refill on a 10k-track library.
REFRESH_EVERY_REFILLS = 20  # the most recent positives (after the seeds) a refill starts from
POSITIVE = ("play", "complete", "like")
NEGATIVE = ("skip", "dislike")


@dataclass
class RefillReport:
    added: list[QueueEntry] = field(default_factory=list)
    held: Counter = field(default_factory=Counter)  # rule -> candidates it held back
    considered: int = 0
    note: str = ""

    def text(self) -> str:
        parts = [f"radio queued {len(self.added)}"]
        if self.held:
            parts.append("held back " + ", ".join(f"{n} by {rule}" for rule, n in self.held.most_common()))
        return "; ".join(parts) + (f" ({self.note})" if self.note else "")


class Radio:
    def __init__(
        self,
        engine,
        queue: PlayQueue,
        seeds: Sequence[int],
        *,
        rules: DiversityRules | None = None,
        recommender: str | None = None,
        backend: str | None = None,
        refill_below: int | None = None,
        batch: int | None = None,
        seed_label: str | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not seeds:
            raise UserError("a radio needs at least one seed track", "select a track or a playlist first")
        self.engine = engine
        self.queue = queue
        self.seeds = list(dict.fromkeys(int(s) for s in seeds))
        settings = engine.settings
        self.rules = rules or DiversityRules.from_settings(settings)
        self.filter = DiversityFilter(self.rules, rng=rng)
        self.recommender = recommender or engine.recommender
        self.backend = backend or engine.backend
        self.refill_below = settings.radio_refill_below if refill_below is None else refill_below
        self.batch = settings.radio_batch if batch is None else batch
        self.clock = clock
        self.liked: list[int] = []
        self.skipped: set[int] = set()
        self.skipped_artists: Counter = Counter()
        self.last_played: dict[int, float] = engine.store.last_played_times()
        # by content too: a byte-identical copy under another path was heard when its twin was
        self.last_played_content: dict[str, float] = {}
        for track in engine.store.tracks(ids=list(self.last_played)):
            if track.content_hash:
                at = self.last_played[track.id]
                self.last_played_content[track.content_hash] = max(
                    at, self.last_played_content.get(track.content_hash, at)
                )
        self.seed_label = seed_label or self._describe_seeds()
        self._centre_for: tuple[str, int] | None = None
        self._served: tuple | None = None  # (embeddings mark, catalogue, model, name, note)
        self._refills_since_refresh = 0
        self._tracks: dict[int, object] = {}
        self._centre_cache = np.zeros(0, np.float32)

    def set_rules(self, rules: DiversityRules) -> None:
        """New diversity rules from the next refill on (what is queued already stays)."""
        self.rules = rules
        self.filter = DiversityFilter(rules, rng=self.filter.rng)

    @classmethod
    def from_playlist(cls, engine, queue: PlayQueue, name: str, **options) -> Radio:
        from mrs_tui.playlists import playlist_tracks

        tracks = playlist_tracks(engine.store, name)
        return cls(engine, queue, [t.id for t in tracks], seed_label=f"playlist {name!r}", **options)

    def _describe_seeds(self) -> str:
        first = self.engine.store.track(self.seeds[0])
        label = first.display_title if first is not None else f"track {self.seeds[0]}"
        return label + (f" and {len(self.seeds) - 1} more" if len(self.seeds) > 1 else "")

    # -- learning ----------------------------------------------------------------------------

    def feedback(self, track_id: int, event: str, *, track=None) -> None:
        """What the listener did with a track the radio played (the app also records it in the history).

        `track`, when the caller has it, saves a database read (the app calls this on its UI thread).
        """
        now = self.clock()
        self.last_played[track_id] = now
        track = track if track is not None else self.engine.store.track(track_id)
        if track is not None and track.content_hash:
            self.last_played_content[track.content_hash] = now
        if event in POSITIVE:
            if track_id not in self.liked:
                self.liked.append(track_id)
            self.skipped.discard(track_id)
        elif event in NEGATIVE:
            self.skipped.add(track_id)
            if track_id in self.liked:
                self.liked.remove(track_id)
            if track is not None and track.artist:
                self.skipped_artists[TrackFacts.of(track).artist] += 1

    # -- refilling ---------------------------------------------------------------------------

    def needs_refill(self) -> bool:
        return len(self.queue.upcoming) < self.refill_below

    def refill(self, *, force: bool = False, add: bool = True) -> RefillReport:
        """Queue `batch` more tracks if fewer than `refill_below` are upcoming (or `force`).

        With `add=False` the entries are only proposed (in `report.added`): a worker thread
        computes them and the UI thread, which owns the queue, adds them.
        """
        report = RefillReport()
        if not force and not self.needs_refill():
            return report
        catalogue, model, name = self._serving(report)
        if catalogue is None:
            report.note = f"nothing is analysed with {self.backend} yet"
            return report
        index_of = catalogue.index_of
        profile_ids = [t for t in self.seeds if t not in self.skipped] + self.liked[-PROFILE_TRACKS:]
        profile = [index_of[t] for t in dict.fromkeys(profile_ids) if t in index_of]
        if not profile:
            report.note = "no seed is analysed yet"
            return report
        queued = set(self.queue.track_ids())
        exclude = {index_of[t] for t in queued | self.skipped | set(self.seeds) if t in index_of}
        context = self._context(catalogue)
        now = self.clock()
        k = min(len(catalogue), max(self.rules.top_k, self.batch))
        picks = []
        while True:
            items, scores = model.recommend(Query(history=profile, pool="all", exclude=exclude), k)
            ranked = self._facts(catalogue, items, scores)
            report.considered = len(ranked)
            picks, held = self.filter.select(
                ranked, context, self.batch, now, held_artists=self.skipped_artists, pool_size=k
            )
            if len(picks) == self.batch or k >= len(catalogue) - len(exclude):
                break
            k = min(len(catalogue), k * 4)  # the rules held back too much of the top: look deeper
        report.held = held
        why = f"radio from {self.seed_label}: {name} on {self.backend}"
        report.added = [
            QueueEntry(p.facts.track_id, f"{why}, score {p.score:.3f}", p.rule, "radio", p.score) for p in picks
        ]
        if add:
            self.queue.add(report.added)
        if len(picks) < self.batch:
            report.note = f"only {len(picks)} of {self.batch} passed the diversity rules"
        return report

    def _serving(self, report: RefillReport):
        """(catalogue, model, name), refreshed when embeddings were added or every few refills."""
        store = self.engine.store
        mark = store.change_count()  # moves with every embedding written or deleted
        stale = self._served is None or self._served[0] != mark
        if stale or self._refills_since_refresh >= REFRESH_EVERY_REFILLS:
            catalogue = self.engine.catalogue(self.backend)
            if len(catalogue) == 0:
                return None, None, ""
            model, name = self._model(report)
            self._served = (mark, catalogue, model, name, report.note)
            self._refills_since_refresh = 0
            self._tracks.clear()
        self._refills_since_refresh += 1
        _mark, catalogue, model, name, note = self._served
        report.note = report.note or note
        return catalogue, model, name

    def _track_facts_source(self, track_ids: list[int]) -> dict[int, object]:
        """Tracks by id, from a cache refreshed with the model."""
        missing = [t for t in track_ids if t not in self._tracks]
        if missing:
            self._tracks.update((t.id, t) for t in self.engine.store.tracks(ids=missing))
        return {t: self._tracks[t] for t in track_ids if t in self._tracks}

    def _model(self, report: RefillReport):
        from mrs_tui.training import ModelNotTrained

        try:
            return self.engine.fitted_model(self.recommender, self.backend), self.recommender
        except ModelNotTrained:
            report.note = f"{self.recommender} is not trained yet: knn meanwhile"
            return self.engine.fitted_model("knn", self.backend), "knn"

    def _facts(self, catalogue, items: np.ndarray, scores: np.ndarray) -> list[tuple[TrackFacts, float]]:
        track_ids = [int(catalogue.track_ids[i]) for i in items]
        tracks = self._track_facts_source(track_ids)
        centre = self._centre(catalogue)
        vectors = _unit(catalogue.vectors[np.asarray(items, np.int64)] - centre) if len(items) else np.zeros((0, 0))
        out = []
        for row, (track_id, score) in enumerate(zip(track_ids, scores, strict=True)):
            track = tracks.get(track_id)
            if track is not None and track.status == "ok":
                out.append((TrackFacts.of(track, vectors[row], self._heard_at(track)), float(score)))
        return out

    def _context(self, catalogue) -> list[TrackFacts]:
        """Recent plays (up to the window) then the upcoming queue, oldest first."""
        played = self.queue.entries[: self.queue.position + 1][-self.rules.window :]
        ids = [e.track_id for e in played + self.queue.upcoming]
        tracks = self._track_facts_source(ids)
        index_of = catalogue.index_of
        out = []
        for track_id in ids:
            track = tracks.get(track_id)
            if track is None:
                continue
            item = index_of.get(track_id)
            vector = _unit(catalogue.vectors[item][None, :] - self._centre(catalogue))[0] if item is not None else None
            out.append(TrackFacts.of(track, vector, self._heard_at(track)))
        return out

    def _centre(self, catalogue) -> np.ndarray:
        """The catalogue's mean vector. Cosines for the near-duplicate rule are taken around it:
        raw features such as MFCC means share a large common component, which puts every pair of
        tracks above 0.98 and would make the rule hold back everything."""
        if self._centre_for != (catalogue.backend, len(catalogue)):
            self._centre_cache = catalogue.vectors.mean(axis=0)
            self._centre_for = (catalogue.backend, len(catalogue))
        return self._centre_cache

    def _heard_at(self, track) -> float | None:
        times = [self.last_played.get(track.id), self.last_played_content.get(track.content_hash or "")]
        known = [t for t in times if t is not None]
        return max(known) if known else None


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
