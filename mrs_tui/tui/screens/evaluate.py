"""Measure backends × recommenders on your own listening, the paper's way, and keep the runs.

Contexts are listening sessions: a test session's first half is the query and the rest is
what should be found, split into hot (tracks known from training) and cold (absent from the
training period) targets. Every run is stored with its settings, so past runs stay
comparable; the grid runs in a worker with progress per cell and can be cancelled. It is the
app's worker, not this screen's: leaving the screen does not stop a run, which is stored when
it completes. Past runs are read in workers too.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, OptionList, Static
from textual.widgets.option_list import Option

from mrs_tui.progress import Throttle
from mrs_tui.tui.widgets.chart import Bar, MetricChart
from mrs_tui.tui.widgets.footer import KeyFooter
from mrs_tui.tui.widgets.status import JobStatus

if TYPE_CHECKING:
    from mrs_tui.engine import Engine
    from mrs_tui.evaluation.runner import EvalRun

K_CHOICES = (10, 20, 50, 100)
METRICS = ("HitRate", "Recall", "NDCG")


@dataclass
class EvalProgressed(Message):
    done: float
    total: float
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvalProgressed)


@dataclass
class EvalFinished(Message):
    run: EvalRun | None
    error: str | None = None


@dataclass
class EvalOverview(Message):
    """Backends analysed and past runs, read in a worker."""

    backends: list[str]
    runs: list[dict]
    select: int | None = None


@dataclass
class RunLoaded(Message):
    run: EvalRun


class EvaluateScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "run", "New run"),
        Binding("k", "cycle_k", "Change K"),
        Binding("x", "toggle_quick", "Quick/full"),
        Binding("c", "cancel", "Cancel"),
        Binding("d", "test_date", "Test date"),
        Binding("B", "pick_backends", "Backends"),
        Binding("R", "pick_recommenders", "Recommenders"),
        Binding("u", "use_winners", "Use the winner"),
        Binding("g", "toggle_chart", "Chart/table"),
    ]
    DEFAULT_CSS = """
    EvaluateScreen #eval-settings { height: auto; padding: 0 1; }
    EvaluateScreen #eval-body { height: 1fr; }
    EvaluateScreen #eval-runs { width: 34; height: 1fr; border: round $primary-darken-2; }
    EvaluateScreen #eval-results { width: 1fr; border: round $primary-darken-2; }
    EvaluateScreen #eval-split { height: auto; color: $text-muted; padding: 0 1; }
    EvaluateScreen DataTable { height: 1fr; min-height: 5; }
    EvaluateScreen #eval-chart-box { height: auto; max-height: 50%; padding: 0 1; }
    EvaluateScreen.-chart #eval-table { display: none; }
    EvaluateScreen.-chart #eval-chart-box { height: 1fr; max-height: 100%; }
    EvaluateScreen #eval-winner { height: auto; padding: 0 1; text-style: bold; }
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.k = 50
        self.quick = True
        self.backends: list[str] | None = None  # None: not read yet
        self.runs: dict[int, dict] = {}
        self.test_date: str | None = None  # None: the last month of the history is the test month
        self.chosen_backends: list[str] | None = None  # None: every analysed backend
        self.recommenders: list[str] | None = None  # None: every registered recommender
        self.shown: EvalRun | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="eval-settings")
        with Horizontal(id="eval-body"):
            yield OptionList(id="eval-runs")
            with Vertical(id="eval-results"):
                yield Static("", id="eval-split")
                yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="eval-winner")
                with VerticalScroll(id="eval-chart-box"):
                    yield MetricChart(id="eval-chart")
        yield JobStatus(id="eval-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.show_settings()
        self.load_runs()

    def show_settings(self) -> None:
        analysed = ", ".join(self.backends or []) or ("none yet" if self.backends is not None else "…")
        mode = "quick (fewer training epochs: a first look)" if self.quick else "full (the recommenders' defaults)"
        chosen = ", ".join(self.chosen_backends) if self.chosen_backends else f"all analysed ({analysed})"
        recs = ", ".join(self.recommenders) if self.recommenders else "all"
        self.query_one("#eval-settings", Static).update(
            "Your listening history, sessions as contexts: the first half of a test session is the query, the rest "
            "must be found.\n"
            f"K={self.k} (k) · {mode} (x) · test date {self.test_date or 'last month of the history'} (d) · "
            f"backends {chosen} (B) · recommenders {recs} (R) · n starts a run, c cancels, u uses the winner"
        )

    # -- past runs -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="evaluate-read", exit_on_error=False)
    def load_runs(self, select: int | None = None) -> None:
        from mrs_tui.evaluation.runner import list_runs

        self.post_message(EvalOverview(self.engine.indexed_backends(), list_runs(self.engine.store), select))

    def on_eval_overview(self, message: EvalOverview) -> None:
        self.backends = message.backends
        self.show_settings()
        runs, select = message.runs, message.select
        self.runs = {r["id"]: r for r in runs}
        options = self.query_one("#eval-runs", OptionList)
        options.clear_options()
        for run in runs:
            when = time.strftime("%m-%d %H:%M", time.localtime(run["created_at"]))
            options.add_option(Option(f"#{run['id']} {when} {run.get('dataset', '')}", id=str(run["id"])))
        if runs:
            options.highlighted = 0 if select is None else next((i for i, r in enumerate(runs) if r["id"] == select), 0)
        else:
            self.query_one("#eval-split", Static).update("no evaluation yet: press n to run one")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.read_run(int(event.option.id))

    @work(thread=True, exclusive=True, group="evaluate-run", exit_on_error=False)
    def read_run(self, run_id: int) -> None:
        from mrs_tui.evaluation.runner import load_run

        self.post_message(RunLoaded(load_run(self.engine.store, run_id)))

    def on_run_loaded(self, message: RunLoaded) -> None:
        self.show_run(message.run)

    def show_run(self, run: EvalRun) -> None:
        from mrs_tui.comparison import describe_winners, winners
        from mrs_tui.evaluation.metrics import metric_names

        self.shown = run
        self.query_one("#eval-winner", Static).update(
            f"{describe_winners(winners(run))} · u serves them" if run.cells else ""
        )
        self.show_chart(run)

        ks = run.ks
        names = metric_names(ks)
        self.query_one("#eval-split", Static).update("\n".join(run.header()))
        table = self.query_one("#eval-table", DataTable)
        table.clear(columns=True)
        table.add_columns(
            "backend", "recommender", *(f"hot {n}" for n in names), *(f"cold {n}" for n in names), "fit s"
        )
        for cell in run.cells:
            if cell.error:
                table.add_row(cell.backend, cell.recommender, f"failed: {cell.error}")
                continue
            hot = [cell.parts.get("hot", {}).get(n) for n in names]
            cold = [cell.parts.get("cold", {}).get(n) for n in names]
            table.add_row(
                cell.backend,
                cell.recommender,
                *(s.format() if s else "–" for s in hot),
                *(s.format() if s else "–" for s in cold),
                f"{cell.fit_seconds:.1f}",
            )

    def show_chart(self, run: EvalRun) -> None:
        """NDCG at the run's largest K for every cell, hot then cold, with 95 % whiskers."""
        k = max(run.ks)
        bars = []
        for part, style in (("hot", "cyan"), ("cold", "magenta")):
            for cell in run.cells:
                summary = cell.parts.get(part, {}).get(f"NDCG@{k}")
                if summary is not None and not cell.error:
                    label = f"{part} {cell.recommender}" + (f" on {cell.backend}" if cell.backend != "-" else "")
                    bars.append(Bar(label, summary.mean, summary.half_width, summary.n, style))
        date = run.split.get("test_date") or "?"
        self.query_one("#eval-chart", MetricChart).show(
            bars, f"NDCG@{k}, mean ± 95 % CI over test sessions · run #{run.id} · test date {date}"
        )

    # -- settings -------------------------------------------------------------------------------------

    def action_test_date(self) -> None:
        from mrs_tui.tui.screens.prompts import TextPrompt

        def chosen(value: str | None) -> None:
            if value is None:
                return
            from mrs_tui.errors import UserError
            from mrs_tui.evaluation.splits import parse_date

            value = value.strip()
            if value:
                try:
                    parse_date(value)
                except UserError as exc:
                    self.notify(str(exc), severity="warning")
                    return
            self.test_date = value or None
            self.show_settings()

        self.app.push_screen(
            TextPrompt(
                "Test date (YYYY-MM-DD; empty: the last month of your history is the test month)", self.test_date or ""
            ),
            chosen,
        )

    def action_pick_backends(self) -> None:
        from mrs_tui.tui.screens.prompts import ChecklistPrompt

        analysed = self.backends or []  # read in the overview worker
        chosen = set(self.chosen_backends or analysed)

        def picked(values: list[str] | None) -> None:
            if values is not None:
                self.chosen_backends = values if values and set(values) != set(analysed) else None
                self.show_settings()

        self.app.push_screen(ChecklistPrompt("Backends to evaluate", [(n, n in chosen) for n in analysed]), picked)

    def action_pick_recommenders(self) -> None:
        import recommenders
        from mrs_tui.evaluation.runner import VARIANTS
        from mrs_tui.tui.screens.prompts import ChecklistPrompt

        names = [n for n, spec in recommenders.REGISTRY.items() if not spec.baseline] + list(VARIANTS)
        chosen = set(self.recommenders or names)

        def picked(values: list[str] | None) -> None:
            if values is not None:
                self.recommenders = values if values and set(values) != set(names) else None
                self.show_settings()

        self.app.push_screen(
            ChecklistPrompt(
                "Recommenders to evaluate (popular and random are always added)", [(n, n in chosen) for n in names]
            ),
            picked,
        )

    def action_toggle_chart(self) -> None:
        """The chart alone (it needs the room on a small terminal), or the table with the chart under it."""
        self.toggle_class("-chart")

    def action_use_winners(self) -> None:
        if self.shown is None or self.shown.id is None:
            self.notify("no evaluation to take a winner from: n runs one", severity="warning")
            return
        self.app.use_winners(self.shown.id)

    # -- a new run ----------------------------------------------------------------------------------

    def action_cycle_k(self) -> None:
        self.k = K_CHOICES[(K_CHOICES.index(self.k) + 1) % len(K_CHOICES)] if self.k in K_CHOICES else 50
        self.show_settings()

    def action_toggle_quick(self) -> None:
        self.quick = not self.quick
        self.show_settings()

    def _evaluations(self) -> list:
        return [w for w in self.app.workers if w.group == "evaluate" and not w.is_finished]

    def action_cancel(self) -> None:
        for worker in self._evaluations():
            worker.cancel()

    def action_run(self) -> None:
        if self._evaluations():
            self.notify("an evaluation is already running (c cancels it)")
            return
        self.query_one(JobStatus).show("preparing the split", 0, None)
        self.app.run_worker(
            functools.partial(
                self.evaluate, self.k, self.quick, self.test_date, self.chosen_backends, self.recommenders
            ),
            thread=True,
            exclusive=True,
            group="evaluate",
            exit_on_error=False,
        )

    def evaluate(self, k: int, quick: bool, test_date=None, chosen_backends=None, chosen_recommenders=None) -> None:
        """The grid on the play history with the chosen (default: every analysed) backend, stored unless cancelled."""
        from textual.worker import get_current_worker

        from mrs_tui.errors import UserError
        from mrs_tui.evaluation.runner import EvalSettings

        post = Throttle().wrap(self.post_message)
        try:
            run = self.engine.evaluate(
                EvalSettings(
                    ks=(k,),
                    backends=chosen_backends,
                    recommenders=chosen_recommenders,
                    quick=quick,
                    test_date=test_date,
                ),
                progress=lambda done, total, text: post(EvalProgressed(done, total, text)),
                cancel=get_current_worker().cancelled_event,
            )
        except UserError as exc:
            self.post_message(EvalFinished(None, str(exc)))
            return
        self.post_message(EvalFinished(run))

    def on_eval_progressed(self, message: EvalProgressed) -> None:
        self.query_one(JobStatus).show(f"{message.text} · c cancels", message.done, message.total or None)

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.query_one(JobStatus).hide()
        if message.run is None:
            self.notify(message.error or "evaluation failed", title="Evaluation", severity="warning", timeout=10)
            return
        run = message.run
        self.notify(
            f"evaluated {len(run.cells)} cells in {run.seconds:.0f} s" + (" (cancelled)" if run.cancelled else ""),
            title="Evaluation",
        )
        self.show_run(run)
        if run.id is not None:  # a cancelled run is shown but not stored
            self.load_runs(select=run.id)
