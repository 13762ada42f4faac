"""Side-by-side comparison of backends (or recommenders) on one seed, measured on the user's history.

`compare` builds the columns the compare screen and `mrs-tui compare` show: one suggestion list
per backend under one recommender ("backends" axis) or per recommender on one backend
("recommenders" axis), aligned by rank; the tracks several columns share, with one mark each;
the pairwise overlap of the lists (Jaccard@K and rank-biased overlap); and, per column, the
latest stored evaluation of that pair on this history with paired tests between columns that
were measured in the same run (the same test sessions).

`winners` names the best pair per mode in an evaluation run (what "use the winner" applies),
and the blind A/B helpers turn two columns into an unlabelled round and tally the choices.
No Textual here; numpy only, torch only inside the recommenders the engine calls.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

import recommenders as recommender_registry
from mrs_tui.errors import UserError
from mrs_tui.evaluation.metrics import Summary
from mrs_tui.evaluation.runner import CellResult, EvalRun, list_runs, load_run
from mrs_tui.evaluation.stats import PairedResult, paired_test, proportion_ci, verdict

AXES = ("backends", "recommenders")
HISTORY_DATASET = "local history"  # the name `history_dataset` gives the user's own listening
RBO_PERSISTENCE = 0.9  # weight of rank d+1 relative to rank d: the top ~10 ranks carry most of the measure
SHARED_MARKS = "●▲■◆★✚♣♠♥♦✦✪"
TESTED_METRIC = "NDCG"  # the metric the paired tests compare (graded, so finer than HitRate)


# -- overlap measures ----------------------------------------------------------------------------


def jaccard_at_k(a: Sequence[int], b: Sequence[int], k: int) -> float:
    """|A ∩ B| / |A ∪ B| of the two top-K sets (nan when both lists are empty)."""
    top_a, top_b = set(list(a)[:k]), set(list(b)[:k])
    union = top_a | top_b
    return len(top_a & top_b) / len(union) if union else float("nan")


def rank_biased_overlap(a: Sequence[int], b: Sequence[int], k: int, p: float = RBO_PERSISTENCE) -> float:
    """Extrapolated rank-biased overlap of two rankings cut at depth k (Webber, Moffat & Zobel 2010, eq. 32).

    RBO_ext = X_k/k · p^k + (1-p)/p · Σ_{d=1..k} X_d/d · p^d, with X_d the overlap of the top d:
    1 for identical lists, 0 for disjoint ones, and agreement at the top counts most.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"RBO persistence must be in (0, 1), got {p}")
    a, b = list(a)[:k], list(b)[:k]
    depth = min(k, max(len(a), len(b)))
    if depth == 0 or not a or not b:
        return float("nan")
    total = 0.0
    overlap = 0
    for d in range(1, depth + 1):
        overlap = len(set(a[:d]) & set(b[:d]))  # k is small (tens): no need to be clever
        total += overlap / d * p**d
    return overlap / depth * p**depth + (1 - p) / p * total


# -- what the comparison is made of ---------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonSeed:
    """What the lists are for: a track (with the current session), a past session, or a track list."""

    track: int | None = None
    session: int | None = None  # None: the current session
    tracks: tuple[int, ...] | None = None  # a playlist or the queue, standing in for the session
    # The seed track's title where the caller has it at hand (the app), so describing the seed
    # needs no query on the UI thread.
    title: str | None = field(default=None, compare=False)

    def describe(self, store) -> str:
        if self.tracks is not None:
            return f"{self.title or 'playlist or queue'} ({len(self.tracks)} tracks)"
        if self.track is not None:
            if self.title is not None:
                return f"{self.title} and this session"
            track = store.track(self.track)
            return f"{track.display_title if track else self.track} and this session"
        return "this session" if self.session is None else f"session {self.session}"


@dataclass
class CellMetrics:
    """The latest stored evaluation of one (backend, recommender) pair on this history."""

    run_id: int
    created_at: float
    k: int
    test_date: str | None
    parts: dict[str, dict[str, Summary]]  # "hot"/"cold" -> {"HitRate@10": Summary, ...}
    values: dict[str, dict[str, np.ndarray]] = field(repr=False, default_factory=dict)

    def summary(self, part: str, metric: str) -> Summary | None:
        return self.parts.get(part, {}).get(f"{metric}@{self.k}")

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "k": self.k,
            "test_date": self.test_date,
            "parts": {p: {m: s.to_dict() for m, s in ms.items()} for p, ms in self.parts.items()},
        }


@dataclass
class Column:
    backend: str
    recommender: str
    track_ids: list[int] = field(default_factory=list)
    result: object | None = None  # the engine's SuggestionList
    error: str | None = None  # why there is no list (e.g. a learned recommender not trained yet)
    needs_training: bool = False
    metrics: CellMetrics | None = None

    def label(self, axis: str) -> str:
        return self.backend if axis == "backends" else self.recommender

    def to_dict(self) -> dict:
        items = getattr(self.result, "items", []) if self.result is not None else []
        return {
            "backend": self.backend,
            "recommender": self.recommender,
            "mode": getattr(self.result, "mode", None),
            "header": self.result.describe() if self.result is not None else None,
            "error": self.error,
            "needs_training": self.needs_training,
            "tracks": [
                {
                    "rank": rank + 1,
                    "id": s.track.id,
                    "title": s.track.display_title,
                    "artist": s.track.artist,
                    "percentile": round(s.percentile, 1),
                    "new": s.new,
                }
                for rank, s in enumerate(items)
            ],
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
        }


@dataclass
class PairedComparison:
    a: int  # column indices
    b: int
    part: str
    metric: str
    result: PairedResult
    sentence: str

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "part": self.part,
            "metric": self.metric,
            **self.result.as_dict(),
            "verdict": self.sentence,
        }


@dataclass
class Comparison:
    axis: str
    seed: ComparisonSeed
    k: int
    columns: list[Column]
    shared: dict[int, str]  # track id -> mark, for tracks in two or more columns
    jaccard: np.ndarray  # (columns x columns)
    rbo: np.ndarray
    paired: list[PairedComparison]
    fixed: str  # the recommender (backends axis) or backend (recommenders axis) every column shares

    @property
    def labels(self) -> list[str]:
        return [c.label(self.axis) for c in self.columns]

    @property
    def depth(self) -> int:
        return max((len(c.track_ids) for c in self.columns), default=0)

    def to_dict(self, store=None) -> dict:
        def matrix(m: np.ndarray) -> list[list[float | None]]:
            return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in m]

        return {
            "axis": self.axis,
            "fixed": self.fixed,
            "k": self.k,
            "seed": {"track": self.seed.track, "session": self.seed.session, "tracks": self.seed.tracks},
            "columns": [c.to_dict() for c in self.columns],
            "shared": {str(t): mark for t, mark in self.shared.items()},
            "overlap": {"labels": self.labels, "jaccard": matrix(self.jaccard), "rbo": matrix(self.rbo)},
            "paired_tests": [p.to_dict() for p in self.paired],
        }


# -- stored evaluations ---------------------------------------------------------------------------


class HistoryRuns:
    """Evaluation runs on this history, newest first (cancelled runs included: their cells are real).

    Loaded one by one as they are iterated: the columns' metrics are usually all in the newest
    run, and loading fifty runs with their per-session values would cost every comparison.
    """

    def __init__(self, store, limit: int = 50) -> None:
        self.store = store
        self._ids = [r["id"] for r in list_runs(store, limit) if r["dataset"] == HISTORY_DATASET]
        self._loaded: list[EvalRun] = []

    def __iter__(self):
        for index, run_id in enumerate(self._ids):
            if index == len(self._loaded):
                self._loaded.append(load_run(self.store, run_id))
            yield self._loaded[index]

    def __len__(self) -> int:
        return len(self._ids)


def history_runs(store, limit: int = 50) -> HistoryRuns:
    return HistoryRuns(store, limit)


def latest_history_run(store, run_id: int | None = None) -> EvalRun:
    if run_id is not None:
        return load_run(store, run_id)
    runs = list_runs(store, 50)
    for row in runs:
        if row["dataset"] == HISTORY_DATASET:
            return load_run(store, row["id"])
    raise UserError("there is no evaluation of your history yet", "run one: press e in the app, or mrs-tui eval")


def _cell_key(cell: CellResult) -> tuple[str, str]:
    return cell.backend, cell.recommender


def cell_metrics(runs: Iterable[EvalRun], backend: str, recommender: str, k: int) -> CellMetrics | None:
    """The newest run's metrics of the pair (baselines are stored with backend "-")."""
    spec = recommender_registry.REGISTRY.get(recommender)
    wanted = (
        {(backend, recommender), ("-", recommender)} if spec is not None and spec.baseline else {(backend, recommender)}
    )
    for run in runs:
        for cell in run.cells:
            if _cell_key(cell) in wanted and cell.error is None and cell.parts:
                ks = run.ks
                run_k = k if k in ks else max(ks)
                return CellMetrics(
                    run.id or 0, run.created_at, run_k, run.split.get("test_date"), cell.parts, cell.values
                )
    return None


def winners(run: EvalRun, metric: str = TESTED_METRIC) -> dict[str, CellResult]:
    """The best learned or audio pair per mode by `metric` at the run's largest K ("hot", "cold").

    Baselines are left out (they cannot serve a library: `popular` knows no new file); a cold
    winner must score cold items by their audio.
    """
    name = f"{metric}@{max(run.ks)}"
    best: dict[str, tuple[float, CellResult]] = {}
    for cell in run.cells:
        if cell.error or cell.baseline or cell.backend == "-":
            continue
        for part in ("hot", "cold"):
            if part == "cold" and not cell.scores_cold_items:
                continue
            summary = cell.parts.get(part, {}).get(name)
            if summary is None or summary.mean is None:
                continue
            if part not in best or summary.mean > best[part][0]:
                best[part] = (summary.mean, cell)
    return {part: cell for part, (_, cell) in best.items()}


def describe_winners(best: dict[str, CellResult]) -> str:
    """ "on your history: hybrid on musicnn for hot, shallow on mfcc for new files"."""
    names = {"hot": "hot", "cold": "new files"}
    parts = [f"{c.recommender} on {c.backend} for {names[p]}" for p, c in best.items()]
    return "on your history: " + ", ".join(parts) if parts else "no winner yet: evaluate your history first"


def describe_serving(store, served: dict) -> str:
    """The header's line while measured winners serve: each mode's pair and the run they won.

    "hot: hybrid on musicnn · new files: shallow on mfcc · evaluation #3, 2026-12-01";
    empty while the selected backend and recommender serve.
    """
    if not served:
        return ""
    import datetime

    names = {"hot": "hot", "cold": "new files"}
    modes = sorted(served, key=lambda m: (m != "hot", m))  # hot first
    parts = [f"{names.get(m, m)}: {served[m].recommender} on {served[m].backend}" for m in modes]
    runs = {r["id"]: r for r in list_runs(store, 200)}
    for run_id in dict.fromkeys(p.run_id for p in served.values()):
        run = runs.get(run_id)
        when = (
            datetime.datetime.fromtimestamp(run["created_at"], datetime.UTC).strftime("%Y-%m-%d")
            if run is not None
            else "deleted since"
        )
        parts.append(f"evaluation #{run_id}, {when}")
    return "serving " + " · ".join(parts)


# -- building a comparison -----------------------------------------------------------------------


def plan_columns(
    engine, backends: Sequence[str] | None, recommenders: Sequence[str] | None, axis: str | None = None
) -> tuple[str, list[tuple[str, str]], str]:
    """(axis, [(backend, recommender)], fixed) for the chosen backends and recommenders."""
    from mrs_tui.evaluation.datasets import indexed_backends

    recs = [r for r in (recommenders or []) if r]
    names = [b for b in (backends or []) if b]
    for r in recs:
        recommender_registry.get_spec(r)
    axis = axis or ("recommenders" if len(recs) > 1 else "backends")
    if axis not in AXES:
        raise UserError(f"unknown axis {axis!r}", "use backends or recommenders")
    if axis == "backends":
        names = names or indexed_backends(engine.store, engine.version) or [engine.backend]
        recommender = recs[0] if recs else engine.recommender
        return axis, [(b, recommender) for b in names], recommender
    backend = names[0] if names else engine.backend
    recs = recs or [n for n, spec in recommender_registry.REGISTRY.items() if not spec.baseline] + [
        n for n, spec in recommender_registry.REGISTRY.items() if spec.baseline
    ]
    return axis, [(backend, r) for r in recs], backend


def reusable(known, seed: ComparisonSeed, backend: str, recommender: str, k: int) -> bool:
    """Whether a list computed elsewhere (the main screen's) answers this column as asked.

    Only a list of exactly this pair for this seed and the current session, over the whole
    library, neither a fallback nor a measured winner's routing.
    """
    return (
        known is not None
        and seed.tracks is None
        and seed.session is None
        and known.backend == backend
        and known.recommender == recommender
        and known.pool == "all"
        and not known.served
        and known.fallback_from is None
        and (known.seed.id if known.seed is not None else None) == seed.track
        and len(known.items) == k
    )


def _column(engine, seed: ComparisonSeed, backend: str, recommender: str, k: int, known=None) -> Column:
    from mrs_tui.training import ModelNotTrained

    column = Column(backend, recommender)
    if reusable(known, seed, backend, recommender, k):
        column.result = known
        column.track_ids = [s.track.id for s in known.items]
        return column
    try:
        result = engine.suggest(
            seed.track,
            k=k,
            backend=backend,
            recommender=recommender,
            session_id=seed.session,
            tracks=list(seed.tracks) if seed.tracks is not None else None,
        )
    except ModelNotTrained:
        column.error = f"{recommender} is not trained for {backend} yet · t trains it"
        column.needs_training = True
        return column
    except UserError as exc:
        column.error = str(exc)
        return column
    column.result = result
    column.track_ids = [s.track.id for s in result.items]
    if not result.items and result.note:
        column.error = result.note
    return column


def shared_marks(columns: Sequence[Column]) -> dict[int, str]:
    """One mark per track found in two or more columns, handed out in rank order (top first)."""
    counts: dict[int, int] = {}
    for column in columns:
        for track in set(column.track_ids):
            counts[track] = counts.get(track, 0) + 1
    marks: dict[int, str] = {}
    depth = max((len(c.track_ids) for c in columns), default=0)
    for rank in range(depth):
        for column in columns:
            if rank < len(column.track_ids):
                track = column.track_ids[rank]
                if counts[track] > 1 and track not in marks:
                    n = len(marks)
                    marks[track] = SHARED_MARKS[n] if n < len(SHARED_MARKS) else str(n - len(SHARED_MARKS) + 1)
    return marks


def overlap_matrices(columns: Sequence[Column], k: int, p: float = RBO_PERSISTENCE) -> tuple[np.ndarray, np.ndarray]:
    n = len(columns)
    jaccard = np.full((n, n), np.nan)
    rbo = np.full((n, n), np.nan)
    for i, j in itertools.product(range(n), repeat=2):
        a, b = columns[i].track_ids, columns[j].track_ids
        jaccard[i, j] = jaccard_at_k(a, b, k)
        rbo[i, j] = rank_biased_overlap(a, b, k, p)
    return jaccard, rbo


def paired_comparisons(columns: Sequence[Column], axis: str, metric: str = TESTED_METRIC) -> list[PairedComparison]:
    """Paired tests between columns whose metrics come from the same run (the same test contexts)."""
    out = []
    for i, j in itertools.combinations(range(len(columns)), 2):
        a, b = columns[i].metrics, columns[j].metrics
        if a is None or b is None or a.run_id != b.run_id:
            continue
        for part in ("hot", "cold"):
            name = f"{metric}@{a.k}"
            va, vb = a.values.get(part, {}).get(name), b.values.get(part, {}).get(name)
            if va is None or vb is None or len(va) != len(vb) or len(va) == 0:
                continue
            result = paired_test(va, vb, seed=0)
            la, lb = columns[i].label(axis), columns[j].label(axis)
            out.append(PairedComparison(i, j, part, name, result, f"{part}: {verdict(result, la, lb)}"))
    return out


def compare(
    engine,
    seed: ComparisonSeed,
    *,
    backends: Sequence[str] | None = None,
    recommenders: Sequence[str] | None = None,
    axis: str | None = None,
    k: int = 10,
    runs: Iterable[EvalRun] | None = None,
    known=None,
) -> Comparison:
    """Every column for `seed`, the shared tracks, overlaps, latest metrics and paired tests.

    `known`: a suggestion list already computed for this seed (the main screen's), used for
    the column it answers instead of asking the engine again.
    """
    if k < 1:
        raise UserError("K must be a positive whole number", "e.g. -k 10")
    axis, plan, fixed = plan_columns(engine, backends, recommenders, axis)
    columns = [_column(engine, seed, b, r, k, known) for b, r in plan]
    runs = history_runs(engine.store) if runs is None else runs
    for column in columns:
        column.metrics = cell_metrics(runs, column.backend, column.recommender, k)
    jaccard, rbo = overlap_matrices(columns, k)
    return Comparison(
        axis, seed, k, columns, shared_marks(columns), jaccard, rbo, paired_comparisons(columns, axis), fixed
    )


# -- blind A/B ---------------------------------------------------------------------------------


@dataclass
class BlindRound:
    """Two columns shown as "left" and "right" without labels; `left_is_a` hides which is which."""

    axis: str
    a: Column
    b: Column
    left_is_a: bool
    seed: ComparisonSeed

    @property
    def left(self) -> Column:
        return self.a if self.left_is_a else self.b

    @property
    def right(self) -> Column:
        return self.b if self.left_is_a else self.a

    def pair_name(self, column: Column) -> str:
        return f"{column.backend}/{column.recommender}"

    def record(self, store, picked: str) -> str:
        """Store the choice ("left", "right" or "same") and return the reveal sentence."""
        if picked not in ("left", "right", "same"):
            raise ValueError(f"unknown side {picked!r}")
        choice = "same" if picked == "same" else ("a" if (picked == "left") == self.left_is_a else "b")
        store.add_ab_choice(
            self.axis, self.pair_name(self.a), self.pair_name(self.b), choice, seed_track_id=self.seed.track
        )
        left, right = self.left.label(self.axis), self.right.label(self.axis)
        chosen = {"left": left, "right": right, "same": "neither"}[picked]
        return f"left was {left}, right was {right}: you preferred {chosen}"


def blind_round(
    engine,
    seed: ComparisonSeed,
    a: tuple[str, str],
    b: tuple[str, str],
    *,
    k: int = 10,
    rng: random.Random | None = None,
) -> BlindRound:
    """Two lists for the same seed, (backend, recommender) `a` and `b`, sides randomised."""
    if a == b:
        raise UserError("an A/B round needs two different pairs", "pick two backends or two recommenders")
    axis = "backends" if a[1] == b[1] else "recommenders" if a[0] == b[0] else "pairs"
    rng = rng or random.Random()
    left_is_a = rng.random() < 0.5
    return BlindRound(axis, _column(engine, seed, *a, k), _column(engine, seed, *b, k), left_is_a, seed)


def ab_stats(store) -> list[dict]:
    """Each pair's tally with the Wilson 95 % interval of A's share of the decided rounds."""
    out = []
    for tally in store.ab_tallies():
        decided = tally.a_wins + tally.b_wins
        ci = proportion_ci(tally.a_wins, decided)
        leader, wins = (tally.a, tally.a_wins) if tally.a_wins >= tally.b_wins else (tally.b, tally.b_wins)
        low, high = (ci.low, ci.high) if leader == tally.a else (1 - ci.high, 1 - ci.low)
        sentence = (
            f"{leader} preferred {wins} of {decided}, 95 % CI {low:.2f}–{high:.2f}"
            + (f" ({tally.same} same)" if tally.same else "")
            if decided
            else f"{tally.a} vs {tally.b}: {tally.same} rounds judged the same"
        )
        out.append(
            {
                "axis": tally.axis,
                "a": tally.a,
                "b": tally.b,
                "a_wins": tally.a_wins,
                "b_wins": tally.b_wins,
                "same": tally.same,
                "a_share": ci.share,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "summary": sentence,
            }
        )
    return out
