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
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from mrs_tui.progress import Throttle
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
    ]
    DEFAULT_CSS = """
    EvaluateScreen #eval-settings { height: auto; padding: 0 1; }
    EvaluateScreen #eval-body { height: 1fr; }
    EvaluateScreen #eval-runs { width: 34; height: 1fr; border: round $primary-darken-2; }
    EvaluateScreen #eval-results { width: 1fr; border: round $primary-darken-2; }
    EvaluateScreen #eval-split { height: auto; color: $text-muted; padding: 0 1; }
    EvaluateScreen DataTable { height: 1fr; }
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.k = 50
        self.quick = True
        self.backends: list[str] | None = None  # None: not read yet
        self.runs: dict[int, dict] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="eval-settings")
        with Horizontal(id="eval-body"):
            yield OptionList(id="eval-runs")
            with Vertical(id="eval-results"):
                yield Static("", id="eval-split")
                yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
        yield JobStatus(id="eval-status")
        yield Footer()

    def on_mount(self) -> None:
        self.show_settings()
        self.load_runs()

    def show_settings(self) -> None:
        backends = ", ".join(self.backends or []) or ("none yet" if self.backends is not None else "…")
        mode = "quick (fewer training epochs: a first look)" if self.quick else "full (the recommenders' defaults)"
        self.query_one("#eval-settings", Static).update(
            "Your listening history, sessions as contexts: the first half of a test session is the query, the rest "
            "must be found.\n"
            f"K={self.k} (k) · {mode} (x) · backends analysed: {backends} · "
            "n starts a run, c cancels"
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
        from mrs_tui.evaluation.metrics import metric_names

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
            functools.partial(self.evaluate, self.k, self.quick),
            thread=True,
            exclusive=True,
            group="evaluate",
            exit_on_error=False,
        )

    def evaluate(self, k: int, quick: bool) -> None:
        """The grid on the play history with every analysed backend, stored unless cancelled."""
        from textual.worker import get_current_worker

        from mrs_tui.errors import UserError
        from mrs_tui.evaluation.runner import EvalSettings

        post = Throttle().wrap(self.post_message)
        try:
            run = self.engine.evaluate(
                EvalSettings(ks=(k,), quick=quick),
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
