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
paper) next to ``knn``; baseline recommenders (``elsa``, ``popular``, ``random``) are always
added and, as they ignore the audio vectors, evaluated once and shown with backend ``-``.
Every learned recommender also has a ``NAME+paper`` row on request (``--recommenders
shallow,shallow+paper``): the same model with ``paper_compat=True``, the published code's
behaviour; ``EvalSettings.paper_compat`` (``--paper-compat``) turns it on for every row.

Honest numbers:

- A model that ranks no cold item (``recommends_for_cold`` False: ``elsa``, ``popular``)
  gets no cold cell: the table says "no cold scores" rather than a ranking of ties.
- When K is at least the number of candidates of a part (39 cold tracks and K = 50), every
  model, ``random`` included, scores HitRate = Recall = 1 there: those columns read
  "uninformative" in the table, and the JSON lists them under ``uninformative``.
- Learned models that can (``selects_by_validation``: shallow, hybrid, bert4rec) choose
  their epoch by NDCG@K on the validation contexts, as the paper early-stops on its
  validation users, when the validation part has at least `VALIDATION_MIN_CONTEXTS`
  contexts; below that they keep their fixed budget and the header warns. Each cell says
  which rule chose its checkpoint. The validation row is then no longer an unbiased
  estimate for those models (it chose them); the hot and cold test rows are.
- ``EvalSettings.seeds`` (``--seeds 0,1,2``) fits every learned cell once per seed: the cell
  shows the mean over seeds (per-context values averaged over the seeds, with the
  per-context CI) and the spread across seeds (their standard deviation). Baselines and
  knn, which learn nothing random, run once. `EvalRun.paired` compares two cells over the
  same contexts with `mrs_tui.evaluation.stats.paired_test`.

All backends are evaluated on the *same* split: items without a vector in one of the selected
backends are removed from the log before splitting, and the notes say how many rows that cost.

Where the paper's code and text disagree:

- ``src/utils.py:calc_metrics`` (lines 56-60) ignores its ``k`` argument and always cuts at
  50, and the training scripts pass ``k=20`` for the cold test (``calc_metrics(cold_test,
  cold_pred, False, 20)`` in ``src/train.py``, ``train_contrast.py``, ``train_hybrid.py`` and
  ``train_bert.py``, on lists of ``k = 100``): those columns are labelled @20 but computed
  @50. We compute every metric at exactly the K's asked for, for hot and cold alike (default
  K = 50, the paper's effective value for both). ``EvalSettings.paper_cold_k``
  (``--paper-cold-k``, part of ``--paper-compat``) reproduces the code's cold columns as an
  explicit choice: the cold part is computed at K = 50 whatever K's were asked for, and the
  table says that these are the numbers the code labels @20.
- The hot ranking is over hot items (training items) minus the user's training items; the cold
  ranking over cold items only — as the code does (two FAISS indexes), and as the text says.
- The code has no cold row for its popularity baseline (``src/poprec.py`` ranks hot test
  users only), nor for ELSA (``src/elsa.py``): we leave those cells empty too, and say so.
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
from recommenders.base import Cancelled, Query, Recommender, Validation

BASELINES = ("popular", "random")
# Extra rows: a label, the registered recommender it runs and its options.
VARIANTS: dict[str, tuple[str, dict]] = {"knn+zscore": ("knn", {"zscore": True})}
PAPER_SUFFIX = "+paper"  # "shallow+paper": the recommender with paper_compat=True
SKIPS_SUFFIX = "+neg"  # "shallow+neg": the recommender learning from skips and dislikes
NEGATIVES = ("auto", "on", "off", "both")
PARTS = ("hot", "cold", "val")
_SCORE_BUDGET = 20_000_000  # floats per query batch (queries x items): ~80 MB of scores
# Below this many validation contexts the fixed budget is kept. Measured with
# bench/bench_selection.py (shallow, 500 generated users, 93 validation users, 25 epochs whose
# full-part NDCG@50 spans 0.082-0.096; best 0.0963, last epoch 0.0905): choosing on n users
# recovered, of the 0.0058 the best epoch gains over the fixed budget, +0.0012 at n=5, +0.0018
# at 10, +0.0024 at 25 and +0.0032 at 50 — more than half only from 50 on, where the standard
# error of a mean (0.017) approaches the spread between epochs; below, the pick is mostly noise.
VALIDATION_MIN_CONTEXTS = 50
UNINFORMATIVE = "K ≥ candidates: uninformative"
PAPER_COLD_K = 50  # what the paper's code computes for the cold columns it labels @20


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
    seeds: tuple[int, ...] | None = None  # model seeds of the learned cells; None: (model_seed,)
    selection: str = "auto"  # checkpoint rule: "auto" (validation when big enough), "validation", "fixed"
    paper_compat: bool = False  # every row with paper_compat=True, and the code's cold K (paper_cold_k)
    paper_cold_k: bool = False  # the cold part computed at K = 50, as the code's cold "@20" columns
    # Skips and dislikes as negatives for the learned rows: "on", "off", "both" (each row with and
    # without, "NAME" and "NAME+neg", same seeds), "auto" (each model's default: on, off with paper_compat).
    negatives: str = "auto"

    def __post_init__(self) -> None:
        self.seeds = tuple(int(x) for x in self.seeds) if self.seeds else None
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"repeated seed in {','.join(map(str, self.seeds))}", "give each seed once, e.g. 0,1,2")
        if self.negatives not in NEGATIVES:
            raise UserError(f"unknown negatives setting {self.negatives!r}", f"use one of: {', '.join(NEGATIVES)}")
        if self.selection not in ("auto", "validation", "fixed"):
            raise UserError(f"unknown selection rule {self.selection!r}", "use auto, validation or fixed")
        if self.paper_compat:
            self.paper_cold_k = True
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

    @property
    def model_seeds(self) -> tuple[int, ...]:
        return self.seeds or (self.model_seed,)

    def part_ks(self, part: str) -> tuple[int, ...]:
        return (PAPER_COLD_K,) if part == "cold" and self.paper_cold_k else self.ks


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
    seeds: list[int] = field(default_factory=list)
    # How each seed's checkpoint was chosen: {"rule": "validation", "epoch", "metric", "value"} or the fixed budget.
    selection: list[dict] = field(default_factory=list)
    # part -> metric -> {"sd": spread of the per-seed means, "means": [one per seed]}, with several seeds.
    seed_spread: dict[str, dict[str, dict]] = field(default_factory=dict)
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
            "seeds": list(self.seeds),
            "selection": list(self.selection),
            "seed_spread": self.seed_spread,
            "values": {
                p: {m: np.round(np.asarray(v, np.float64), 6).tolist() for m, v in metrics.items()}
                for p, metrics in self.values.items()
            },
        }

    def selection_text(self) -> str:
        """Which rule chose the checkpoint, e.g. "validation: epoch 7 (NDCG@50 0.412)"."""
        if not self.selection:
            return ""
        rules = {s.get("rule") for s in self.selection}
        if rules == {"validation"}:
            metric = self.selection[0].get("metric", "")
            picks = ", ".join(f"epoch {s['epoch']} ({metric} {s['value']:.3f})" for s in self.selection)
            return f"checkpoint by validation: {picks}"
        epochs = ", ".join(str(s.get("epochs_run", s.get("epoch"))) for s in self.selection)
        return f"checkpoint: fixed budget, {epochs} epochs"

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
            list(data.get("seeds", [])),
            list(data.get("selection", [])),
            dict(data.get("seed_spread", {})),
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
            "uninformative": self.uninformative(),
            "seconds": round(self.seconds, 3),
            "cancelled": self.cancelled,
        }

    def part_ks(self, part: str) -> list[int]:
        if part == "cold" and self.settings.get("paper_cold_k"):
            return [PAPER_COLD_K]
        return self.ks

    def uninformative(self) -> list[dict]:
        """(part, K) pairs where K covers every candidate: HitRate and Recall are 1 for any model."""
        out = []
        for part, candidates in self.split.get("candidates", {}).items():
            for k in self.part_ks(part):
                if candidates and k >= candidates:
                    out.append(
                        {
                            "part": part,
                            "k": k,
                            "candidates": candidates,
                            "metrics": [f"HitRate@{k}", f"Recall@{k}"],
                            "note": UNINFORMATIVE,
                        }
                    )
        return out

    def paired(self, a: tuple[str, str], b: tuple[str, str], *, part: str = "hot", metric: str | None = None):
        """Paired test of two cells (backend, recommender) over the same contexts of `part`.

        Needs the per-context values of a run made in this process (stored runs keep summaries).
        Returns the `PairedResult` and `verdict`'s sentence.
        """
        from mrs_tui.evaluation.stats import paired_test, verdict

        metric = metric or f"NDCG@{max(self.part_ks(part))}"
        try:
            cells = [self.cell(*a), self.cell(*b)]
        except KeyError as exc:
            backend, recommender = exc.args[0]
            raise UserError(
                f"no cell {backend}:{recommender} in this run", "name cells BACKEND:RECOMMENDER (baselines: -:NAME)"
            ) from None
        values = []
        for cell in cells:
            if part not in cell.values or metric not in cell.values[part]:
                raise UserError(
                    f"no per-context {metric} on the {part} part for {cell.recommender} on {cell.backend}",
                    "pair cells of a run made now (stored runs keep only the summaries)",
                )
            values.append(cell.values[part][metric])
        result = paired_test(values[0], values[1], seed=int(self.settings.get("model_seed", 0)))
        names = [f"{c.recommender} on {c.backend}" if c.backend != "-" else c.recommender for c in cells]
        return result, f"{part} {metric}: " + verdict(result, names[0], names[1])

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
        for note in self.settings.get("notes", []):
            lines.append(f"note: {note}")
        return lines

    def table(self, parts: Sequence[str] = ("hot", "cold")) -> str:
        width = 15
        lines = self.header()
        label_w = max([len(c.backend) for c in self.cells] + [7]) + 1
        rec_w = max([len(c.recommender) for c in self.cells] + [11]) + 1
        flagged = {(u["part"], m) for u in self.uninformative() for m in u["metrics"]}
        for part in parts:
            names = metric_names(self.part_ks(part))
            lines.append("")
            head = f"{part.upper():{label_w}s}{'':{rec_w}s}" + "".join(f"{n:>{width}s}" for n in names) + "    fit s"
            lines.append(head)
            for cell in self.cells:
                prefix = f"{cell.backend:{label_w}s}{cell.recommender:{rec_w}s}"
                if cell.error:
                    lines.append(prefix + f"  failed: {cell.error}")
                    continue
                if part == "cold" and not cell.scores_cold_items:
                    lines.append(prefix + "  no cold scores: it ranks only tracks it was trained on")
                    continue
                metrics = cell.parts.get(part, {})
                values = "".join(
                    f"{'uninformative' if (part, n) in flagged else metrics[n].format() if n in metrics else '–':>{width}s}"
                    for n in names
                )
                lines.append(prefix + values + f"{cell.fit_seconds:9.2f}")
                spread = cell.seed_spread.get(part)
                if spread:
                    sds = "".join(
                        f"{('sd ' + format(spread[n]['sd'], '.3f')) if n in spread else '':>{width}s}" for n in names
                    )
                    lines.append(f"{'':{label_w}s}{'  over seeds':{rec_w}s}" + sds + f"   ({len(cell.seeds)} seeds)")
        notes = [c for c in self.cells if c.selection_text() and not c.error]
        if notes:
            lines.append("")
            for cell in notes:
                name = cell.recommender if cell.backend == "-" else f"{cell.backend} {cell.recommender}"
                lines.append(f"{name}: {cell.selection_text()}")
        lines.append("")
        lines.append("mean ± 95% Student-t half-width over test contexts; '–': no test context in this part")
        if any(c.seed_spread for c in self.cells):
            lines.append(
                "with several seeds: per-context values averaged over the seeds; 'sd': spread of the seeds' means; "
                "'fit s': all seeds together"
            )
        for item in self.uninformative():
            lines.append(
                f"uninformative: {item['part']} part, K = {item['k']} ≥ {item['candidates']} candidates — "
                "HitRate and Recall are 1 for every model, random included"
            )
        if self.settings.get("paper_cold_k") and "cold" in parts:
            lines.append(f"cold part at K = {PAPER_COLD_K}: the numbers the paper's code labels @20")
        if self.cancelled:
            lines.append("cancelled: only the cells above were evaluated")
        return "\n".join(lines)


# -- preparing the split ----------------------------------------------------------------------


def _learns_from_skips(recommender: str) -> bool:
    params = recommender_registry.recommender_class(recommender).Params
    return "learn_from_skips" in params.__dataclass_fields__


def resolve_rows(names: Sequence[str] | None, *, paper_compat: bool = False, negatives: str = "auto") -> list[Row]:
    """The recommender rows to evaluate: the chosen ones (default: all) plus every baseline.

    A label ``NAME+paper`` runs NAME with ``paper_compat=True``; `paper_compat` sets it on every row.
    A label ``NAME+neg`` runs NAME learning from skips and dislikes. `negatives` sets that on
    every row of a model that can ("on"/"off"), or doubles those rows ("both": ``NAME``
    without, ``NAME+neg`` with).
    """
    rows = _resolve_rows(names, paper_compat=paper_compat)
    out: list[Row] = []
    for row in rows:
        if negatives == "auto" or "learn_from_skips" in row.params or not _learns_from_skips(row.recommender):
            out.append(row)
            continue
        if negatives == "both":
            out.append(Row(row.label, row.recommender, {**row.params, "learn_from_skips": False}, row.baseline))
            params = {**row.params, "learn_from_skips": True}
            out.append(Row(row.label + SKIPS_SUFFIX, row.recommender, params, row.baseline))
        else:
            out.append(
                Row(row.label, row.recommender, {**row.params, "learn_from_skips": negatives == "on"}, row.baseline)
            )
    return out


def _resolve_rows(names: Sequence[str] | None, *, paper_compat: bool = False) -> list[Row]:
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
        if label.endswith(PAPER_SUFFIX) and label not in VARIANTS:
            base, params = label[: -len(PAPER_SUFFIX)], {"paper_compat": True}
        if label.endswith(SKIPS_SUFFIX) and label not in VARIANTS:
            base, params = label[: -len(SKIPS_SUFFIX)], {"learn_from_skips": True}
            if base in registry and not _learns_from_skips(base):
                raise UserError(f"{base} does not learn from skips", "drop +neg from its name")
        if base not in registry:
            choices = ", ".join(list(registry) + list(VARIANTS) + [f"NAME{PAPER_SUFFIX}"])
            raise UserError(f"unknown recommender {label!r}", f"choose from: {choices}")
        if paper_compat:
            params = {**params, "paper_compat": True}
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


def _add_negatives(events: Events, log: PlayLog, vocabulary: np.ndarray, contexts: str) -> None:
    """The log's skips and dislikes in the codes of `events` (contexts it has no plays in are dropped).

    Sessions found by the time gap have no keys to match skips with: those logs teach no skips.
    """
    negatives = log.negatives
    if negatives is None or len(negatives) == 0:
        return
    if contexts == "users":
        keys = negatives.users
    elif log.sessions is not None and negatives.sessions is not None:
        keys = negatives.sessions
    else:
        return
    codes = _item_codes(negatives.items, vocabulary)
    position = np.searchsorted(events.context_keys, keys)
    clipped = np.minimum(position, max(len(events.context_keys) - 1, 0))
    known = (codes >= 0) & (position < len(events.context_keys))
    known &= events.context_keys[clipped] == keys if len(events.context_keys) else False
    events.negative_contexts = position[known].astype(np.int64)
    events.negative_items = codes[known]
    events.negative_timestamps = negatives.timestamps[known]


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
    _add_negatives(events, log, vocabulary, contexts)
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


def _fit(
    row: Row,
    split: Split,
    vectors: np.ndarray,
    settings: EvalSettings,
    progress,
    cancel,
    *,
    seed: int,
    validation: Validation | None,
) -> Recommender:
    params = dict(row.params)
    if settings.quick:
        quick = getattr(recommender_registry.recommender_class(row.recommender), "quick_params", {})
        params = {**quick, **params}
    model = recommender_registry.create(row.recommender, seed=seed, **params)
    model.fit(split.train, vectors, progress=progress, cancel=cancel, validation=validation)
    return model


def cell_name(backend: str, row: Row) -> str:
    return f"{row.label} on {backend}" if not row.baseline else row.label


def failed_cell(backend: str, row: Row, error: str | None) -> CellResult:
    return CellResult("-" if row.baseline else backend, row.label, baseline=row.baseline, error=error)


def evaluate_cell(
    backend: str,
    row: Row,
    split: Split,
    vectors: np.ndarray,
    settings: EvalSettings,
    *,
    progress: ProgressFn | None = None,
    at: float = 0.0,
    of: float = 1.0,
    cancel: threading.Event | None = None,
) -> CellResult:
    """Fit and evaluate one (backend, recommender) cell of the grid on `split`.

    `progress` moves through ``[at, at + 1]`` of `of` (fitting the first half, ranking the
    second); a failure is kept in the cell's `error`, a cancel raises `Cancelled`. Local and
    cluster runs (mrs_tui.cluster) both call this.
    """
    cell = failed_cell(backend, row, error=None)
    name = cell_name(backend, row)
    try:
        select, _ = use_validation(settings, split)
        validation = validation_for(split, settings, cancel) if select else None
        spec = recommender_registry.get_spec(row.recommender)
        # Models that learn nothing random (knn, popular, random) run once, with the first seed.
        seeds = settings.model_seeds if spec.trainable else settings.model_seeds[:1]
        cell.seeds = list(seeds)
        per_seed: dict[str, list[list[dict[str, float]]]] = {part: [] for part in PARTS}
        cases_total = max(1, len(split.hot) + len(split.cold) + len(split.val))
        for run_index, seed in enumerate(seeds):
            share = 1.0 / len(seeds)
            base = at + run_index * share
            seed_label = f" (seed {seed})" if len(seeds) > 1 else ""
            fit_progress = subrange(progress, base, 0.5 * share, of, f"fitting {name}{seed_label}")
            t0 = time.perf_counter()
            model = _fit(row, split, vectors, settings, fit_progress, cancel, seed=seed, validation=validation)
            cell.fit_seconds += time.perf_counter() - t0
            cell.scores_cold_items = bool(model.recommends_for_cold)
            if model.selection:
                cell.selection.append({**model.selection, "seed": seed})
            t0 = time.perf_counter()
            ranking = subrange(progress, base + 0.5 * share, 0.5 * share, of, f"ranking for {name}{seed_label}")
            done_before = 0
            for part in PARTS:
                if part == "cold" and not model.recommends_for_cold:
                    continue  # it ranks no cold item: a ranking of ties is no result
                cases = getattr(split, part)
                pool = "cold" if part == "cold" else "hot"

                def eval_progress(
                    done: int, total: int, _before: int = done_before, _ranking=ranking, _total: int = cases_total
                ) -> None:
                    if _ranking is not None:
                        _ranking(_before + done, _total)

                per_seed[part].append(
                    evaluate_cases(model, cases, pool, settings.part_ks(part), cancel=cancel, progress=eval_progress)
                )
                done_before += len(cases)
            cell.eval_seconds += time.perf_counter() - t0
        for part, runs in per_seed.items():
            if not runs:
                continue
            names = metric_names(settings.part_ks(part))
            per_context = _seed_average(runs, names) if len(runs) > 1 else runs[0]
            cell.parts[part] = summarize(per_context, names)
            cell.values[part] = {n: np.array([r[n] for r in per_context]) for n in names}
            if len(runs) > 1 and per_context:
                means = {n: [float(np.mean([r[n] for r in one_seed])) for one_seed in runs] for n in names}
                cell.seed_spread[part] = {n: {"sd": float(np.std(m, ddof=1)), "means": m} for n, m in means.items()}
    except Cancelled:
        raise
    except UserError as exc:
        cell.error = str(exc)
    except Exception as exc:  # one broken recommender must not lose the rest of the grid
        cell.error = f"{type(exc).__name__}: {exc}"
    return cell


# Runs a grid's plan elsewhere: (dataset, split, plan, settings, report, cancel) -> (cells, cancelled).
CellExecutor = Callable[..., tuple[list["CellResult"], bool]]


def use_validation(settings: EvalSettings, split: Split) -> tuple[bool, str | None]:
    """Whether learned models choose their checkpoint on the validation part, and a note if not."""
    n = len(split.val)
    if settings.selection == "fixed":
        return False, None
    if settings.selection == "validation":
        return (n > 0), (None if n else "no validation context: learned models keep their fixed budget")
    if n < VALIDATION_MIN_CONTEXTS:
        return False, (
            f"the validation part has {n} contexts (fewer than {VALIDATION_MIN_CONTEXTS}): too few to select "
            "a checkpoint, learned models keep their fixed training budget"
        )
    return True, None


def validation_for(split: Split, settings: EvalSettings, cancel) -> Validation:
    k = max(settings.ks)
    metric = f"NDCG@{k}"

    def score(model: Recommender) -> float:
        rows = evaluate_cases(model, split.val, "hot", [k], cancel=cancel)
        return float(np.mean([r[metric] for r in rows])) if rows else 0.0

    return Validation(score, metric)


def candidate_counts(split: Split) -> dict[str, int]:
    """Per part, the most candidates any of its contexts ranks (the pool minus its exclusions)."""
    hot = split.hot_items()
    out = {}
    for part in PARTS:
        pool = ~hot if part == "cold" else hot
        counts = [int(pool.sum()) - int(pool[np.unique(c.exclude)].sum()) for c in getattr(split, part)]
        if counts:
            out[part] = max(counts)
    return out


def _seed_average(per_seed: list[list[dict[str, float]]], names: Sequence[str]) -> list[dict[str, float]]:
    """Per context, each metric averaged over the seeds (every seed ranks the same contexts)."""
    return [{n: float(np.mean([rows[i][n] for rows in per_seed])) for n in names} for i in range(len(per_seed[0]))]


def run_grid(
    dataset: Dataset,
    settings: EvalSettings | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    cells: CellExecutor | None = None,
) -> EvalRun:
    """Fit and evaluate every (backend, recommender) cell on one split of `dataset`.

    `cells` runs the cells somewhere else (`mrs_tui.cluster.grid.RayCells`); default: here, in turn.
    """
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
    rows = resolve_rows(settings.recommenders, paper_compat=settings.paper_compat, negatives=settings.negatives)
    split = prepare_split(dataset, settings, backends)
    ks = settings.ks
    plan = [(b, r) for b in backends for r in rows if not r.baseline] + [(backends[0], r) for r in rows if r.baseline]
    total = len(plan)
    select, selection_note = use_validation(settings, split)
    notes = [selection_note] if selection_note else []
    if settings.paper_compat:
        notes.append("--paper-compat: every recommender as the paper's published code behaves, not as its text says")
    if settings.negatives == "both":
        notes.append(f"skips and dislikes as negatives: NAME{SKIPS_SUFFIX} rows learn from them, NAME rows do not")
    elif settings.negatives in ("on", "off"):
        notes.append(f"skips and dislikes as negatives: {settings.negatives} for every learned row")
    if split.train.has_negatives:
        notes.append(f"{len(split.train.negative_items)} skipped or disliked (context, track) pairs in training")
    run = EvalRun(
        dataset=dataset.describe(),
        settings={
            **asdict(settings),
            "ks": list(ks),
            "seeds": list(settings.model_seeds),
            "backends": backends,
            "recommenders": [r.label for r in rows],
            "validation_selection": select,
            "notes": notes,
        },
        split={**split.stats(), "candidates": candidate_counts(split)},
        cells=[],
    )

    def report(done: float, message: str) -> None:
        if progress is not None:
            progress(done, total, message)

    if cells is not None:  # another executor (a Ray cluster) runs the same cells
        run.cells, run.cancelled = cells(dataset, split, plan, settings, report, cancel)
        run.seconds = time.perf_counter() - started
        return run
    matrices: dict[str, np.ndarray] = {}
    for index, (backend, row) in enumerate(plan):
        if cancel is not None and cancel.is_set():
            run.cancelled = True
            break
        try:
            if backend not in matrices:
                matrices[backend] = dataset.sources[backend].rows(split.item_keys)
            report(index, f"fitting {cell_name(backend, row)}")
            cell = evaluate_cell(
                backend, row, split, matrices[backend], settings, progress=progress, at=index, of=total, cancel=cancel
            )
        except Cancelled:
            run.cancelled = True
            break
        except Exception as exc:  # this backend's vectors could not be read: its cells fail, not the grid
            cell = failed_cell(backend, row, str(exc))
        run.cells.append(cell)
        report(index + 1, f"done {cell_name(backend, row)}")
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
