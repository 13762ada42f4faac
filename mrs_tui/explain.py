"""Why is this track suggested? The mode, the tracks it is close to, what it sounds like, who else agrees.

`explain(engine, track_id, seed=...)` answers for the list the user is looking at (the selected
backend and recommender, or the winners serving each mode): whether the track was ranked by
what the model learned from the listening history (hot) or by its audio alone (cold) and why;
the session and history tracks it is nearest to in the backend's embedding space, with their
cosine similarity; the tags MusiCNN hears in it whenever MusiCNN vectors exist (whatever
backend serves); which other backends and recommenders also rank it in their top K; and its
rank as a percentile of the candidates, a number that compares across recommenders where raw
scores do not (BERT4Rec's logits and KNN's cosines have nothing in common).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import recommenders as recommender_registry
from mrs_tui.engine import format_percentile, rank_percentile
from mrs_tui.errors import UserError

NEAREST = 5
TAGS = 5
RANK_DEPTH = 500  # how deep the serving list is searched for the track's own rank


@dataclass(frozen=True)
class Neighbour:
    track_id: int
    title: str
    similarity: float  # cosine in the serving backend's space
    where: str  # "seed", "session" or "history"


@dataclass(frozen=True)
class Agreement:
    backend: str
    recommender: str
    rank: int | None  # 1-based rank in that pair's top K, None when outside it or not available
    note: str = ""


@dataclass
class Explanation:
    track_id: int
    title: str
    backend: str
    recommender: str
    mode: str  # "hot" or "cold"
    why: str
    rank: int | None  # 1-based rank in the serving list (None: beyond RANK_DEPTH)
    percentile: float | None
    candidates: int
    nearest: list[Neighbour] = field(default_factory=list)
    tags: list[tuple[str, float]] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)
    k: int = 10
    # When the track came through the queue or the radio: why it was queued and the diversity
    # rules that let it through (the queue entry records both).
    queued: str | None = None
    admitted_by: str | None = None

    def lines(self) -> list[str]:
        """The panel's text, also what `mrs-tui explain` prints."""
        mode = {
            "hot": "hot: learned from your listening",
            "cold": "cold: by its audio only",
            "popular": "popular: among the most played",
        }[self.mode]
        where = (
            f"rank {self.rank} of {self.candidates} ({format_percentile(self.percentile)})"
            if self.rank is not None and self.percentile is not None
            else f"not in the first {RANK_DEPTH} of {self.candidates}"
        )
        out = [f"{self.title}", f"{self.recommender} on {self.backend} · {where}", f"{mode} — {self.why}"]
        if self.nearest:
            out.append("nearest of what you played:")
            out += [f"  {n.similarity:+.2f}  {n.title} ({n.where})" for n in self.nearest]
        out.append(
            "MusiCNN hears: " + ", ".join(f"{tag} {p:.2f}" for tag, p in self.tags)
            if self.tags
            else "MusiCNN hears: (no MusiCNN analysis of this track)"
        )
        agree = [a for a in self.agreements if a.rank is not None]
        if self.agreements:
            out.append(
                f"also in the top {self.k} of: "
                + (", ".join(f"{a.recommender} on {a.backend} (#{a.rank})" for a in agree) if agree else "none")
            )
        if self.queued is not None:
            out.append(f"in the queue: {self.queued}")
            out.append(f"diversity rules that let it through: {self.admitted_by or 'none applied (added by hand)'}")
        return out

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "title": self.title,
            "backend": self.backend,
            "recommender": self.recommender,
            "mode": self.mode,
            "why": self.why,
            "rank": self.rank,
            "percentile": None if self.percentile is None else round(self.percentile, 1),
            "candidates": self.candidates,
            "nearest": [n.__dict__ for n in self.nearest],
            "tags": [{"tag": t, "probability": p} for t, p in self.tags],
            "agreements": [a.__dict__ for a in self.agreements],
            "k": self.k,
            "queued": self.queued,
            "admitted_by": self.admitted_by,
        }


def _why(engine, track_id: int, mode: str, recommender: str, backend: str, model) -> str:
    # A preview in the app is a "play" and then a "complete" or "skip"; imported logs hold completes only.
    plays = max(
        engine.store.play_count(("play",), track_id=track_id), engine.store.play_count(("complete",), track_id=track_id)
    )
    if mode == "popular":
        return "there is no seed or session to go on yet"
    if mode == "hot":
        return f"listened to {plays} time{'s' if plays != 1 else ''} in your history; {recommender} learned from it"
    if plays == 0:
        return "never played, so nothing is known about it but its sound"
    trained = getattr(getattr(model, "record", None), "trained_at", None)
    if trained is not None:
        return f"listened to {plays} times, but after the {recommender} model for {backend} was trained (t retrains)"
    return f"listened to {plays} times, but not in what {recommender} was fitted on"


def _nearest(engine, track_id: int, backend: str, seed: int | None, session: list[int]) -> list[Neighbour]:
    catalogue = engine.catalogue(backend)
    own = catalogue.vector(track_id)
    if own is None:
        return []
    groups = [("seed", [seed] if seed is not None else []), ("session", session)]
    recent = [t for t in engine.store.played_track_ids() if t not in set(session) | {seed, track_id}]
    groups.append(("history", recent))
    unit = own / (np.linalg.norm(own) or 1.0)
    found: list[Neighbour] = []
    for where, ids in groups:
        rows = [(t, catalogue.vector(t)) for t in ids if t != track_id]
        rows = [(t, v) for t, v in rows if v is not None]
        if not rows:
            continue
        matrix = np.stack([v for _, v in rows]).astype(np.float64)
        sims = (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)) @ unit
        for index in np.argsort(-sims)[:NEAREST]:
            t = rows[int(index)][0]
            track = engine.store.track(t)
            found.append(Neighbour(int(t), track.display_title if track else str(t), float(sims[index]), where))
    return found[: NEAREST * 2]


def _musicnn_tags(engine, track_id: int) -> list[tuple[str, float]]:
    import backends as backend_registry

    try:
        version = engine.version("musicnn")
    except (KeyError, UserError):
        return []
    if "musicnn" not in backend_registry.REGISTRY:
        return []
    row = engine.store.embedding(track_id, "musicnn", version)
    if row is None or not row.extras:
        return []
    return [(str(tag), float(p)) for tag, p in row.extras.get("tags", [])[:TAGS]]


def explain(
    engine,
    track_id: int,
    *,
    seed: int | None = None,
    backend: str | None = None,
    recommender: str | None = None,
    session_id: int | None = None,
    k: int = 10,
    others: bool = True,
    queue_entry=None,
) -> Explanation:
    """Why `track_id` is (or would be) suggested for `seed` and the session.

    `queue_entry` (a `QueueEntry` of this track) adds why it was queued and which diversity
    rules admitted it.
    """
    from mrs_tui.evaluation.datasets import indexed_backends
    from mrs_tui.training import ModelNotTrained

    track = engine.store.track(track_id)
    if track is None:
        raise UserError(f"no track with id {track_id}", "see `mrs-tui library` for ids")
    pinned = {} if backend is None and recommender is None else {"backend": backend, "recommender": recommender}
    result = engine.suggest(seed, k=RANK_DEPTH, session_id=session_id, **pinned)
    name, rec_name = result.backend, result.recommender
    model = engine.fitted_model(rec_name, name) if result.mode != "popular" else None
    item = engine.catalogue(name).index_of.get(track_id)
    hot_mask = getattr(model, "hot_mask", None)
    hot = item is not None and hot_mask is not None and bool(hot_mask[item]) and result.mode == "hot"
    mode = "popular" if result.mode == "popular" else "hot" if hot else "cold"
    ranks = {s.track.id: i for i, s in enumerate(result.items)}
    rank = ranks.get(track_id)
    explanation = Explanation(
        track_id,
        f"{track.display_title} — {track.artist or '?'}",
        name,
        rec_name,
        mode,
        _why(engine, track_id, mode, rec_name, name, model),
        None if rank is None else rank + 1,
        None if rank is None else rank_percentile(rank, result.candidates),
        result.candidates,
        _nearest(engine, track_id, name, seed, engine.history.session_tracks(session_id)),
        _musicnn_tags(engine, track_id),
        k=k,
    )
    if queue_entry is not None and queue_entry.track_id == track_id:
        explanation.queued = queue_entry.why
        explanation.admitted_by = queue_entry.rule or None
    if others:
        learned = [n for n, s in recommender_registry.REGISTRY.items() if not s.baseline]
        pairs = {(b, rec_name) for b in indexed_backends(engine.store, engine.version)} | {(name, r) for r in learned}
        for other_backend, other_rec in sorted(pairs - {(name, rec_name)}):
            try:
                other = engine.suggest(seed, k=k, backend=other_backend, recommender=other_rec, session_id=session_id)
            except ModelNotTrained:
                explanation.agreements.append(Agreement(other_backend, other_rec, None, "not trained"))
                continue
            except UserError as exc:
                explanation.agreements.append(Agreement(other_backend, other_rec, None, str(exc)))
                continue
            ids = [s.track.id for s in other.items]
            explanation.agreements.append(
                Agreement(other_backend, other_rec, ids.index(track_id) + 1 if track_id in ids else None)
            )
    return explanation
