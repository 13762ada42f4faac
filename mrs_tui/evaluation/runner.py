"""The evaluation grid: backends × recommenders on one split, with progress and cancel.

`run_grid` is the headless API; the CLI (`mrs-tui eval`) and the TUI's Evaluate screen reach
it through `Engine.evaluate`, which adds the user's settings and stores complete runs:

    run = run_grid(dataset, EvalSettings(ks=(10, 50)), progress=cb, cancel=event)
    save_run(store, run)          # into the `eval_runs` table, settings included
    print(run.table())            # or run.to_dict() / run.csv_rows()

``progress(done, total, message)`` counts grid cells (fractions inside a cell: fitting is
the first half, ranking the second); ``cancel`` is a `threading.Event` polled inside `fit` and
between query batches. A cancelled grid returns the cells finished so far with
``run.cancelled`` set — it is the caller's choice to keep or drop it.

Rows are every recommender of `recommenders.REGISTRY` (a newly registered one shows up with
no list to edit here), plus ``knn+zscore`` (KNN over catalogue-standardised vectors, off in the
paper) next to ``knn``; baseline recommenders (``popular``, ``random``) are always added and,
as they ignore the audio vectors, evaluated once and shown with backend ``-``.

All backends are evaluated on the *same* split: items without a vector in one of the selected
backends are removed from the log before splitting, and the notes say how many rows that cost.

Where the paper's code and text disagree:

- ``src/utils.py:calc_metrics`` ignores its ``k`` argument and always cuts at 50, and
  ``knn.py``/``train.py`` pass ``k=20`` for the cold test: those columns are labelled @20 but
  computed @50 on a 100-long list. We compute every metric at exactly the K's asked for,
  for hot and cold alike (default K = 50, the paper's effective value for both).
- The hot ranking is over hot items (training items) minus the user's training items; the cold
  ranking over cold items only — as the code does (two FAISS indexes), and as the text says.
- Baselines score cold items arbitrarily (`popular` gives them all 0): such cells are marked
  ``scores_cold_items = False`` and the table flags them.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

import recommenders as recommender_registry
from mrs_tui.errors import UserError
from mrs_tui.evaluation.datasets import Dataset, PlayLog
from mrs_tui.evaluation.metrics import METRICS, Summary, context_metrics, metric_names, summarize
from mrs_tui.evaluation.splits import (
    PAPER_SEED,
    Events,
    Split,
    TestCase,
    default_test_date,
    format_date,
    parse_date,
    premade_split,
    session_split,
    user_split,
)
from mrs_tui.progress import ProgressFn, subrange
from recommenders.base import Cancelled, Query, Recommender

BASELINES = ("popular", "random")
# Extra rows: a label, the registered recommender it runs and its options.
VARIANTS: dict[str, tuple[str, dict]] = {"knn+zscore": ("knn", {"zscore": True})}
PARTS = ("hot", "cold", "val")
_SCORE_BUDGET = 20_000_000  # floats per query batch (queries x items): ~80 MB of scores


@dataclass
class EvalSettings:
    """Everything that decides the numbers; stored with each run."""

    ks: tuple[int, ...] = (50,)
    backends: list[str] | None = None  # None: every backend the dataset has vectors for
    recommenders: list[str] | None = None  # None: every registered recommender and variant
    test_date: str | None = None  # YYYY-MM-DD; None: the last month of the log is the test month
    contexts: str = "auto"  # "users", "sessions" or "auto" (the dataset's default)
    candidates: str = "auto"  # "split" (train + cold test items), "all" (every item with vectors), "auto"
    train_years: int = 1
    test_months: int = 1
    val_share: float = 0.3  # share of eligible test contexts kept for validation (paper: 0.3)
    split_seed: int = PAPER_SEED
    model_seed: int = 0
    session_gap_minutes: float = 30.0
    quick: bool = False  # each recommender's `quick_params` (fewer epochs): a first look, not the paper's numbers

    def __post_init__(self) -> None:
        self.ks = tuple(sorted({int(k) for k in self.ks}))
        if not self.ks or min(self.ks) < 1:
            raise UserError("K must be a positive whole number", "e.g. -k 50 or -k 10,50")
        if not 0.0 <= self.val_share < 1.0:
            raise UserError(f"validation share {self.val_share} is out of range", "give a share in [0, 1)")
        if self.contexts not in ("auto", "users", "sessions"):
            raise UserError(f"unknown context kind {self.contexts!r}", "use users, sessions or auto")
        if self.candidates not in ("auto", "split", "all"):
            raise UserError(f"unknown candidate set {self.candidates!r}", "use split, all or auto")
        if self.test_date is not None:
            parse_date(self.test_date)  # a typo fails before any work is done


@dataclass(frozen=True)
class Row:
    label: str
    recommender: str
    params: dict
    baseline: bool


@dataclass
class CellResult:
    backend: str  # "-" for baselines, which ignore the vectors
    recommender: str  # the row label, e.g. "knn+zscore"
    parts: dict[str, dict[str, Summary]] = field(default_factory=dict)
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    scores_cold_items: bool = True
    baseline: bool = False
    error: str | None = None
    # Per-context values: part -> metric -> array, in the split's context order (the same for every
    # cell of a run), stored so that two cells of a run can be compared with a paired test later.
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "recommender": self.recommender,
            "parts": {p: {m: s.to_dict() for m, s in metrics.items()} for p, metrics in self.parts.items()},
            "fit_seconds": round(self.fit_seconds, 4),
            "eval_seconds": round(self.eval_seconds, 4),
            "scores_cold_items": self.scores_cold_items,
            "baseline": self.baseline,
            "error": self.error,
            "values": {
                p: {m: np.round(np.asarray(v, np.float64), 6).tolist() for m, v in metrics.items()}
                for p, metrics in self.values.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> CellResult:
        parts = {
            p: {m: Summary(s["mean"], s["half_width"], s["n"]) for m, s in metrics.items()}
            for p, metrics in data.get("parts", {}).items()
        }
        return cls(
            data["backend"],
            data["recommender"],
            parts,
            data.get("fit_seconds", 0.0),
            data.get("eval_seconds", 0.0),
            data.get("scores_cold_items", True),
            data.get("baseline", False),
            data.get("error"),
            {
                p: {m: np.asarray(v, np.float64) for m, v in metrics.items()}
                for p, metrics in data.get("values", {}).items()
            },
        )


@dataclass
class EvalRun:
    dataset: dict
    settings: dict
    split: dict
    cells: list[CellResult]
    created_at: float = field(default_factory=time.time)
    seconds: float = 0.0
    cancelled: bool = False
    id: int | None = None

    @property
    def ks(self) -> list[int]:
        return list(self.settings.get("ks", [50]))

    def cell(self, backend: str, recommender: str) -> CellResult:
        for c in self.cells:
            if c.backend == backend and c.recommender == recommender:
                return c
        raise KeyError((backend, recommender))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "dataset": self.dataset,
            "settings": self.settings,
            "split": self.split,
            "cells": [c.to_dict() for c in self.cells],
            "seconds": round(self.seconds, 3),
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EvalRun:
        return cls(
            data["dataset"],
            data["settings"],
            data["split"],
            [CellResult.from_dict(c) for c in data["cells"]],
            data.get("created_at", 0.0),
            data.get("seconds", 0.0),
            data.get("cancelled", False),
            data.get("id"),
        )

    # -- output ---------------------------------------------------------------------------------

    def csv_rows(self) -> list[dict]:
        """Long format: one row per (part, backend, recommender, metric, K)."""
        rows = []
        for cell in self.cells:
            for part, metrics in cell.parts.items():
                for name, summary in metrics.items():
                    metric, _, k = name.partition("@")
                    rows.append(
                        {
                            "run_id": self.id,
                            "dataset": self.dataset.get("name", ""),
                            "part": part,
                            "backend": cell.backend,
                            "recommender": cell.recommender,
                            "metric": metric,
                            "k": int(k),
                            "mean": summary.mean,
                            "half_width": summary.half_width,
                            "n": summary.n,
                        }
                    )
        return rows

    def to_csv(self) -> str:
        buffer = io.StringIO()
        fields = ["run_id", "dataset", "part", "backend", "recommender", "metric", "k", "mean", "half_width", "n"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.csv_rows())
        return buffer.getvalue()

    def header(self) -> list[str]:
        s = self.split
        unit = {"sessions": "sessions", "users": "users", "premade": "users"}.get(s.get("protocol", ""), "contexts")
        lines = [f"{self.dataset.get('name', 'dataset')} · {s.get('protocol')} as contexts"]
        if s.get("test_date"):
            lines.append(f"train {s['train_start']} → {s['test_date']}, test {s['test_date']} → {s['test_end']}")
        lines.append(
            f"train: {s['train_rows']} plays in {s['train_contexts']} {unit}; {s['items']} candidate tracks "
            f"({s['hot_items']} hot, {s['cold_items']} cold)"
        )
        lines.append(
            f"test: {s['hot_test_contexts']} {unit} with hot targets, {s['cold_test_contexts']} with cold targets; "
            f"{s['val_contexts']} held out for validation"
        )
        for note in self.dataset.get("notes", []):
            lines.append(f"note: {note}")
        return lines

    def table(self, parts: Sequence[str] = ("hot", "cold")) -> str:
        names = metric_names(self.ks)
        width = 15
        lines = self.header()
        label_w = max([len(c.backend) for c in self.cells] + [7]) + 1
        rec_w = max([len(c.recommender) for c in self.cells] + [11]) + 1
        for part in parts:
            lines.append("")
            head = f"{part.upper():{label_w}s}{'':{rec_w}s}" + "".join(f"{n:>{width}s}" for n in names) + "    fit s"
            lines.append(head)
            for cell in self.cells:
                prefix = f"{cell.backend:{label_w}s}{cell.recommender:{rec_w}s}"
                if cell.error:
                    lines.append(prefix + f"  failed: {cell.error}")
                    continue
                metrics = cell.parts.get(part, {})
                values = "".join(f"{metrics[n].format() if n in metrics else '–':>{width}s}" for n in names)
                flag = "  (cold order arbitrary)" if part == "cold" and not cell.scores_cold_items else ""
                lines.append(prefix + values + f"{cell.fit_seconds:9.2f}" + flag)
        lines.append("")
        lines.append("mean ± 95% Student-t half-width over test contexts; '–': no test context in this part")
        if self.cancelled:
            lines.append("cancelled: only the cells above were evaluated")
        return "\n".join(lines)


# -- preparing the split ----------------------------------------------------------------------


def resolve_rows(names: Sequence[str] | None) -> list[Row]:
    """The recommender rows to evaluate: the chosen ones (default: all) plus every baseline."""
    registry = recommender_registry.REGISTRY
    if names is None:
        wanted: list[str] = []
        for name in registry:
            wanted.append(name)
            wanted += [label for label, (base, _) in VARIANTS.items() if base == name]
    else:
        wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    baselines = [n for n in registry if registry[n].baseline or n in BASELINES]
    for name in baselines:
        if name not in wanted:
            wanted.append(name)
    rows = []
    for label in wanted:
        base, params = VARIANTS.get(label, (label, {}))
        if base not in registry:
            choices = ", ".join(list(registry) + list(VARIANTS))
            raise UserError(f"unknown recommender {label!r}", f"choose from: {choices}")
        spec = registry[base]
        rows.append(Row(label, base, dict(params), spec.baseline or base in BASELINES))
    return rows


def _vocabulary(dataset: Dataset, backends: Sequence[str]) -> np.ndarray:
    keys: set | None = None
    for name in backends:
        source_keys = set(dataset.sources[name].keys.tolist())
        keys = source_keys if keys is None else keys & source_keys
    return np.asarray(sorted(keys or ()), dtype=object)


def _item_codes(items: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Vocabulary index of each item key, -1 when it has no vector."""
    lookup = {k: i for i, k in enumerate(vocabulary.tolist())}
    unique, inverse = np.unique(items.astype(str), return_inverse=True)
    codes = np.fromiter((lookup.get(k, -1) for k in unique.tolist()), np.int64, len(unique))
    return codes[inverse]


def _sessionize(log: PlayLog, user_codes: np.ndarray, gap_seconds: float) -> np.ndarray:
    """Session number of each row: a new one after a pause longer than the gap, per user."""
    order = np.lexsort((log.timestamps, user_codes))
    users, stamps = user_codes[order], log.timestamps[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (np.diff(stamps) > gap_seconds)
    sessions = np.empty(len(order), np.int64)
    sessions[order] = np.cumsum(new) - 1
    return sessions


def _events(log: PlayLog, codes: np.ndarray, contexts: str, gap_seconds: float) -> Events:
    user_keys, user_codes = np.unique(log.users, return_inverse=True)
    if contexts == "users":
        return Events(user_codes, codes, log.timestamps, log.counts, user_keys, 0)
    if log.sessions is not None:
        session_keys, session_codes = np.unique(log.sessions, return_inverse=True)
    else:
        session_codes = _sessionize(log, user_codes, gap_seconds)
        session_keys = np.arange(session_codes.max() + 1 if len(session_codes) else 0)
    owners = np.zeros(len(session_keys), np.int64)
    owners[session_codes] = user_codes
    return Events(session_codes, codes, log.timestamps, log.counts, session_keys, 0, owners=owners)


def prepare_split(dataset: Dataset, settings: EvalSettings, backends: Sequence[str]) -> Split:
    """The split every cell of the grid is measured on."""
    vocabulary = _vocabulary(dataset, backends)
    if len(vocabulary) == 0:
        raise UserError(
            f"no track has vectors in all of: {', '.join(backends)}",
            "evaluate fewer backends at once, or index the library with each of them",
        )
    if dataset.parts is not None:
        return _premade(dataset, settings, vocabulary)
    log = dataset.log
    codes = _item_codes(log.items, vocabulary)
    known = codes >= 0
    if (~known).any():
        dataset.notes.append(
            f"{int((~known).sum())} plays left out: their track has no vector in {', '.join(backends)}"
        )
    log, codes = log.take(known), codes[known]
    if len(log) == 0:
        raise UserError(
            f"no played track has a vector in {', '.join(backends)}",
            "with embedding files, pass the --track-ids list that belongs to them; "
            "with the library, index the played tracks first",
        )
    contexts = dataset.default_contexts if settings.contexts == "auto" else settings.contexts
    test_date = (
        parse_date(settings.test_date)
        if settings.test_date
        else default_test_date(log.timestamps, settings.test_months)
    )
    events = _events(log, codes, contexts, settings.session_gap_minutes * 60.0)
    events.n_items = len(vocabulary)
    candidates = settings.candidates
    if candidates == "auto":
        candidates = "split" if contexts == "users" else "all"
    split_fn = user_split if contexts == "users" else session_split
    split = split_fn(
        events,
        vocabulary,
        test_date,
        candidates=candidates,
        train_years=settings.train_years,
        test_months=settings.test_months,
        val_share_to_test=round(1.0 - settings.val_share, 12),  # 0.3 -> the paper's 0.7 exactly
        seed=settings.split_seed,
    )
    if len(split.train) == 0:
        raise UserError(
            f"no play before the test date {format_date(test_date)}",
            "choose a later test date (d on the Evaluate screen, --test-date on the command line); "
            "the year before it is the training period",
        )
    return split


def _premade(dataset: Dataset, settings: EvalSettings, vocabulary: np.ndarray) -> Split:
    parts = dataset.parts
    all_users = np.concatenate([p.users for p in parts.values()])
    user_keys = np.unique(all_users)
    events = {}
    for name, log in parts.items():
        codes = _item_codes(log.items, vocabulary)
        known = codes >= 0
        if (~known).any():
            dataset.notes.append(f"{name}: {int((~known).sum())} rows left out (track without vectors)")
        part = log.take(known)
        user_codes = np.searchsorted(user_keys, part.users)
        events[name] = Events(user_codes, codes[known], part.timestamps, part.counts, user_keys, len(vocabulary))
    candidates = "split" if settings.candidates == "auto" else settings.candidates
    return premade_split(events, vocabulary, candidates=candidates)


# -- running ----------------------------------------------------------------------------------


def evaluate_cases(
    model: Recommender,
    cases: Sequence[TestCase],
    pool: str,
    ks: Sequence[int],
    *,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, float]]:
    """Per-context metrics of `model` on `cases`, ranking within `pool`, without each case's exclusions.

    A case that names a training context (a user) is asked by context alone: every recommender
    knows its training contexts' items (the paper's user profiles). A new session is asked by its
    query tracks.
    """
    k_max = max(ks)
    batch = max(1, min(512, _SCORE_BUDGET // max(model.n_items, 1)))
    out: list[dict[str, float]] = []
    for start in range(0, len(cases), batch):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        chunk = cases[start : start + batch]
        queries = [
            Query(
                history=c.query.tolist() if c.context is None else (),
                context=c.context,
                pool=pool,
                exclude=c.exclude.tolist(),
            )
            for c in chunk
        ]
        for case, (items, _scores) in zip(chunk, model.recommend_batch(queries, k_max), strict=True):
            out.append(context_metrics(items.tolist(), case.relevant.tolist(), ks))
        if progress is not None:
            progress(start + len(chunk), len(cases))
    return out


def _fit(row: Row, split: Split, vectors: np.ndarray, settings: EvalSettings, progress, cancel) -> Recommender:
    params = dict(row.params)
    if settings.quick:
        quick = getattr(recommender_registry.recommender_class(row.recommender), "quick_params", {})
        params = {**quick, **params}
    model = recommender_registry.create(row.recommender, seed=settings.model_seed, **params)
    model.fit(split.train, vectors, progress=progress, cancel=cancel)
    return model


def run_grid(
    dataset: Dataset,
    settings: EvalSettings | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> EvalRun:
    """Fit and evaluate every (backend, recommender) cell on one split of `dataset`."""
    settings = settings or EvalSettings()
    started = time.perf_counter()
    backends = list(settings.backends or dataset.sources)
    if not backends:
        raise UserError("no backend to evaluate", "index the library first, or pass --embeddings FILE.npy")
    for name in backends:
        if name not in dataset.sources:
            raise UserError(
                f"the dataset has no vectors for backend {name!r}",
                f"available: {', '.join(dataset.sources) or 'none'}",
            )
    rows = resolve_rows(settings.recommenders)
    split = prepare_split(dataset, settings, backends)
    ks = settings.ks
    names = metric_names(ks)
    plan = [(b, r) for b in backends for r in rows if not r.baseline] + [(backends[0], r) for r in rows if r.baseline]
    total = len(plan)
    run = EvalRun(
        dataset=dataset.describe(),
        settings={**asdict(settings), "ks": list(ks), "backends": backends, "recommenders": [r.label for r in rows]},
        split=split.stats(),
        cells=[],
    )

    def report(done: float, message: str) -> None:
        if progress is not None:
            progress(done, total, message)

    matrices: dict[str, np.ndarray] = {}
    for index, (backend, row) in enumerate(plan):
        label = "-" if row.baseline else backend
        cell = CellResult(label, row.label, baseline=row.baseline)
        name = f"{row.label} on {backend}" if not row.baseline else row.label
        try:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            if backend not in matrices:
                matrices[backend] = dataset.sources[backend].rows(split.item_keys)
            report(index, f"fitting {name}")
            fit_progress = subrange(progress, index, 0.5, total, f"fitting {name}")
            t0 = time.perf_counter()
            model = _fit(row, split, matrices[backend], settings, fit_progress, cancel)
            cell.fit_seconds = time.perf_counter() - t0
            cell.scores_cold_items = bool(getattr(model, "scores_cold_items", True))
            t0 = time.perf_counter()
            cases_total = max(1, len(split.hot) + len(split.cold) + len(split.val))
            ranking = subrange(progress, index + 0.5, 0.5, total, f"ranking for {name}")
            done_before = 0
            for part in PARTS:
                cases = getattr(split, part)
                pool = "cold" if part == "cold" else "hot"

                def eval_progress(
                    done: int, of: int, _before: int = done_before, _ranking=ranking, _total: int = cases_total
                ) -> None:
                    if _ranking is not None:
                        _ranking(_before + done, _total)

                per_context = evaluate_cases(model, cases, pool, ks, cancel=cancel, progress=eval_progress)
                done_before += len(cases)
                cell.parts[part] = summarize(per_context, names)
                cell.values[part] = {n: np.array([r[n] for r in per_context]) for n in names}
            cell.eval_seconds = time.perf_counter() - t0
        except Cancelled:
            run.cancelled = True
            break
        except UserError as exc:
            cell.error = str(exc)
        except Exception as exc:  # one broken recommender must not lose the rest of the grid
            cell.error = f"{type(exc).__name__}: {exc}"
        run.cells.append(cell)
        report(index + 1, f"done {name}")
    run.seconds = time.perf_counter() - started
    return run


# -- storage ----------------------------------------------------------------------------------


def save_run(store, run: EvalRun) -> int:
    """Store a run in `eval_runs` (dataset name, settings, results) and return its id."""
    results = {
        "dataset": run.dataset,
        "split": run.split,
        "cells": [c.to_dict() for c in run.cells],
        "seconds": run.seconds,
        "cancelled": run.cancelled,
    }
    run.id = store.add_eval_run(run.created_at, run.dataset.get("name", ""), run.settings, results)
    return run.id


def load_run(store, run_id: int) -> EvalRun:
    row = store.eval_run(run_id)
    if row is None:
        raise UserError(f"no evaluation run {run_id}", "list past runs with: mrs-tui eval --runs")
    return EvalRun.from_dict(
        {**row["results"], "id": row["id"], "created_at": row["created_at"], "settings": row["settings"]}
    )


def list_runs(store, limit: int = 50) -> list[dict]:
    """Past runs, newest first: id, when, dataset, K's, backends, recommenders, best hot NDCG."""
    out = []
    for row in store.eval_runs(limit):
        settings, results = row["settings"], row["results"]
        k = max(settings.get("ks", [50]))
        best = None
        for cell in results.get("cells", []):
            summary = cell.get("parts", {}).get("hot", {}).get(f"NDCG@{k}")
            if summary and summary.get("mean") is not None and (best is None or summary["mean"] > best[2]):
                best = (cell["backend"], cell["recommender"], summary["mean"])
        out.append(
            {
                "id": row["id"],
                "created_at": row["created_at"],
                "dataset": row["dataset"],
                "ks": settings.get("ks"),
                "backends": settings.get("backends"),
                "recommenders": settings.get("recommenders"),
                "protocol": results.get("split", {}).get("protocol"),
                "cancelled": results.get("cancelled", False),
                "best_hot_ndcg": None
                if best is None
                else {"backend": best[0], "recommender": best[1], "value": best[2]},
            }
        )
    return out


__all__ = [
    "METRICS",
    "CellResult",
    "EvalRun",
    "EvalSettings",
    "list_runs",
    "load_run",
    "prepare_split",
    "resolve_rows",
    "run_grid",
    "save_run",
]
