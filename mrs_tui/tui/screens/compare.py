"""Backends (or recommenders) side by side on one seed, with overlaps and what your history measured.

This is the product's point in one screen: the backends that top tagging benchmarks do not
necessarily suggest what *you* would play next. One column per backend under one recommender,
or per recommender on one backend (x switches), rows aligned by rank; a track several columns
share carries the same mark in each. Under the columns: the overlap matrix (Jaccard@K and
rank-biased overlap), the latest evaluation of each column's pair on your history as bars with
95 % whiskers, and the paired tests between them. Every cell plays, rates, queues and explains
with the main screen's keys. The comparison is computed in a worker (`mrs_tui.comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Header, Label, OptionList, Static
from textual.widgets.option_list import Option

from mrs_tui.tui.widgets.chart import Bar, MetricChart
from mrs_tui.tui.widgets.footer import KeyFooter
from mrs_tui.tui.widgets.ranked import RankedList

if TYPE_CHECKING:
    from mrs_tui.comparison import Comparison, ComparisonSeed
    from mrs_tui.engine import Engine, Suggestion, SuggestionList

K_CHOICES = (10, 20, 50)
VISIBLE_COLUMNS = 4
MARK_STYLES = ("bold red", "bold green", "bold yellow", "bold magenta", "bold cyan", "bold blue")


@dataclass
class ComparisonReady(Message):
    comparison: Comparison | None
    error: str | None = None
    analysed: list[str] | None = None  # the backends with vectors, read in the worker for the B picker


@dataclass
class SeedsReady(Message):
    """The playlists to offer as seeds, read in a worker: (name, track ids)."""

    playlists: list[tuple[str, list[int]]]


class SeedPicker(ModalScreen[int | None]):
    """What the columns are for: the track, the current session, the queue or a playlist."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close")]
    DEFAULT_CSS = """
    SeedPicker { align: center middle; }
    SeedPicker > Vertical { width: 80; height: auto; max-height: 80%; border: round $accent; background: $surface;
        padding: 0 1; }
    SeedPicker OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, seeds: list[ComparisonSeed], labels: list[str]) -> None:
        super().__init__()
        self.seeds = seeds
        self.labels = labels

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Compare for… (enter picks)")
            yield OptionList(*(Option(Text(label), id=str(i)) for i, label in enumerate(self.labels)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


@dataclass
class ComparisonPrepared(Message):
    """For the app: the first comparison of a seed is computed, the screen can open filled."""

    seed: ComparisonSeed
    ready: ComparisonReady


def prepare_comparison(
    engine: Engine,
    seed: ComparisonSeed,
    *,
    backends: list[str] | None = None,
    recommenders: list[str] | None = None,
    axis: str = "backends",
    k: int = 10,
    known: SuggestionList | None = None,
    analysed: list[str] | None = None,
) -> ComparisonReady:
    """The comparison for a worker to post (run in a thread: it asks the engine and the store)."""
    from mrs_tui.comparison import compare
    from mrs_tui.errors import UserError
    from mrs_tui.evaluation.datasets import indexed_backends

    # The analysed backends are read once per screen: the B picker needs them and, on the
    # backends axis, they are the default columns (the engine would read them again).
    analysed = analysed or indexed_backends(engine.store, engine.version)
    if axis == "backends" and not backends:
        backends = analysed or None
    try:
        result = compare(engine, seed, backends=backends, recommenders=recommenders, axis=axis, k=k, known=known)
    except UserError as exc:
        return ComparisonReady(None, str(exc))
    return ComparisonReady(result, analysed=analysed)


def cell_suggestion(comparison: Comparison, column: int, row: int) -> Suggestion | None:
    col = comparison.columns[column]
    items = col.result.items if col.result is not None else []
    return items[row] if 0 <= row < len(items) else None


class ColumnTable(RankedList):
    """One column's list; `column` is its index in the comparison."""

    def __init__(self, column: int, **kwargs) -> None:
        super().__init__(flex=2, **kwargs)  # the title takes the spare width
        self.column = column


class CompareScreen(Screen):
    USES_ARROWS = True  # ← → move between columns, not through the playing track (`,` `.` still seek)
    AUTO_FOCUS = "ColumnTable"  # the first column, not the scrolling containers around it
    BINDINGS = [
        Binding("escape,v", "app.pop_screen", "Back"),
        Binding("x", "switch_axis", "Backends/recommenders"),
        Binding("p", "play", "Play"),
        Binding("l", "like", "Like"),
        Binding("d", "dislike", "Dislike"),
        Binding("a", "queue", "Queue"),
        Binding("w", "explain", "Why"),
        Binding("b", "blind", "Blind A/B"),
        Binding("t", "train", "Train column"),
        Binding("k", "cycle_k", "K"),
        Binding("B", "pick_backends", "Backends"),
        Binding("R", "pick_recommenders", "Recommenders"),
        Binding("s", "pick_seed", "Seed"),
        Binding("left", "focus_column(-1)", "", show=False),
        Binding("right", "focus_column(1)", "", show=False),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-title { height: auto; padding: 0 1; }
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #columns { height: 1fr; min-height: 14; }
    CompareScreen .column { width: 1fr; min-width: 24; height: 1fr; border: round $primary-darken-2; }
    CompareScreen .column.-narrow { width: 25%; }
    CompareScreen .column:focus-within { border: round $accent; }
    CompareScreen .column-head { height: auto; padding: 0 1; }
    CompareScreen .column ColumnTable { height: 1fr; }
    CompareScreen #compare-below { height: auto; padding: 0 1; }
    """

    def __init__(
        self,
        engine: Engine,
        seed: ComparisonSeed,
        *,
        axis: str = "backends",
        k: int = 10,
        known: SuggestionList | None = None,
        ready: ComparisonReady | None = None,
    ) -> None:
        super().__init__()
        self.ready = ready
        self.engine = engine
        self.seed = seed
        self.known = known  # the main screen's list for this seed: its column needs no engine call
        self.axis = axis
        self.k = k
        self.backends: list[str] | None = None
        self.analysed: list[str] = []
        self.recommenders: list[str] | None = [engine.recommender]
        self.comparison: Comparison | None = None
        self._prepared = False  # composed from `ready`: no comparison to start on mount

    def compose(self) -> ComposeResult:
        # A comparison computed before the screen was pushed is composed into the first layout:
        # filling an empty screen afterwards costs a layout pass per part, and a keypress waits
        # for all of them.
        ready, self.ready = self.ready, None
        self._prepared = ready is not None
        result = self._accept(ready) if ready is not None and ready.comparison is not None else None
        yield Header()
        title = self.title_text(result) if result else (ready.error if ready else None) or "comparing…"
        yield Static(title, id="compare-title", markup=False)
        with VerticalScroll(id="compare-body"):
            with HorizontalScroll(id="columns"):
                if result is not None:
                    yield from self.column_boxes(result)
            with Vertical(id="compare-below"):
                yield Static(self.overlap_text() if result else "", id="overlap")
                chart = MetricChart(id="compare-chart")
                if result is not None:
                    chart.show(*self.chart_bars())
                yield chart
                yield Static(self.paired_text() if result else "", id="paired")
        yield KeyFooter()

    def on_mount(self) -> None:
        if not self._prepared:
            self.refresh_comparison()

    def refresh_comparison(self) -> None:
        self.query_one("#compare-title", Static).update(
            f"comparing {self.axis} on {self.seed.describe(self.engine.store)}…"
        )
        # The main screen's list only for the first fill: a like or a play here makes it stale.
        known, self.known = self.known, None
        self.compute(self.backends, self.recommenders, self.axis, self.k, known)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def compute(self, backends, recommenders, axis: str, k: int, known: SuggestionList | None = None) -> None:
        self.post_message(
            prepare_comparison(
                self.engine,
                self.seed,
                backends=backends,
                recommenders=recommenders,
                axis=axis,
                k=k,
                known=known,
                analysed=self.analysed,
            )
        )

    def _accept(self, message: ComparisonReady) -> Comparison:
        self.comparison = result = message.comparison
        self.analysed = message.analysed or [c.backend for c in result.columns]
        return result

    async def on_comparison_ready(self, message: ComparisonReady) -> None:
        if message.comparison is None:
            self.query_one("#compare-title", Static).update(message.error or "cannot compare")
            return
        result = self._accept(message)
        self.query_one("#compare-title", Static).update(self.title_text(result))
        await self.show_columns(result)
        self.query_one("#overlap", Static).update(self.overlap_text())
        self.query_one("#compare-chart", MetricChart).show(*self.chart_bars())
        self.query_one("#paired", Static).update(self.paired_text())

    def title_text(self, result: Comparison) -> str:
        other = "recommenders" if result.axis == "backends" else "backends"
        title = (
            f"{result.seed.describe(self.engine.store)} · {result.axis} × {result.fixed} · top {result.k}"
            f" · x: compare {other}"
        )
        if len(result.columns) < 2:
            title += "\nonly one column: analyse the library with another backend (b on the main screen) to compare"
        return title

    def column_rows(self, result: Comparison, index: int) -> tuple[list[tuple], list[str | None]]:
        """One column's rows (rank, shared mark, title, rank percentile) and their track keys."""
        column = result.columns[index]
        items = column.result.items if column.result is not None else []
        if not items:
            return [("", "", column.error or "no suggestions", "")], [None]
        mark_style = {t: MARK_STYLES[i % len(MARK_STYLES)] for i, t in enumerate(result.shared)}
        rows = [
            (
                str(rank),
                Text(result.shared.get(item.track.id, ""), style=mark_style.get(item.track.id, "")),
                Text(item.track.display_title, style=mark_style.get(item.track.id, "")),
                f"top {100 - item.percentile:.0f}%",
            )
            for rank, item in enumerate(items, 1)
        ]
        return rows, [str(item.track.id) for item in items]

    def column_box(self, result: Comparison, index: int) -> Vertical:
        table = ColumnTable(index, id=f"column-{index}")
        table.add_columns("#", " ", "Title", "Rank")
        table.set_rows(*self.column_rows(result, index))
        box = Vertical(Label(self.column_head(index), classes="column-head"), table, classes="column")
        box.set_class(len(result.columns) > VISIBLE_COLUMNS, "-narrow")
        return box

    def column_boxes(self, result: Comparison) -> list[Vertical]:
        return [self.column_box(result, index) for index in range(len(result.columns))]

    async def show_columns(self, result: Comparison) -> None:
        """Fill the column lists, reusing the ones on screen: mounting is what a keypress waits for."""
        columns = self.query_one("#columns", HorizontalScroll)
        boxes = list(columns.query(".column"))
        if len(boxes) > len(result.columns):
            await columns.remove_children(boxes[len(result.columns) :])
            boxes = boxes[: len(result.columns)]
        narrow = len(result.columns) > VISIBLE_COLUMNS
        for index, box in enumerate(boxes):
            box.query_one(".column-head", Label).update(self.column_head(index))
            box.query_one(ColumnTable).set_rows(*self.column_rows(result, index))
            box.set_class(narrow, "-narrow")
        if len(result.columns) > len(boxes):
            await columns.mount_all([self.column_box(result, i) for i in range(len(boxes), len(result.columns))])
        if not isinstance(self.focused, ColumnTable) or self.focused.column >= len(result.columns):
            first = self.query(ColumnTable)
            if first:
                first.first().focus()

    def column_head(self, index: int) -> str:
        result = self.comparison
        column = result.columns[index]
        label = f"[b]{column.label(result.axis)}[/b]"
        mode = getattr(column.result, "mode", None)
        if mode:
            label += f" · {mode}"
        m = column.metrics
        if m is None:
            return label + "\nnot evaluated yet (e)"
        lines = [label]
        for part in ("hot", "cold"):
            s = m.summary(part, "NDCG")
            if s is not None and s.mean is not None:
                lines.append(f"{part} NDCG@{m.k} {s.format(2)} n={s.n}")
        return "\n".join(lines)

    def overlap_text(self) -> Text:
        result = self.comparison
        labels = [label[:9] for label in result.labels]
        out = Text("overlap: Jaccard@K above the diagonal, rank-biased overlap below\n", style="bold")
        out.append(" " * 10 + "".join(f"{label:>10}" for label in labels) + "\n")
        for i, label in enumerate(labels):
            row = f"{label:>10}"
            for j in range(len(labels)):
                value = result.jaccard[i, j] if j > i else result.rbo[i, j] if j < i else float("nan")
                row += f"{'-':>10}" if value != value else f"{value:10.2f}"
            out.append(row + "\n")
        return out

    def chart_bars(self) -> tuple[list[Bar], str]:
        """The columns' latest NDCG on your history, hot and cold, and the chart's title."""
        result = self.comparison
        bars = []
        for column in result.columns:
            m = column.metrics
            for part, style in (("hot", "cyan"), ("cold", "magenta")):
                s = m.summary(part, "NDCG") if m is not None else None
                if s is not None:
                    bars.append(Bar(f"{column.label(result.axis)} {part}", s.mean, s.half_width, s.n, style))
        if not bars:
            return [], "not measured on your history yet: press e, then n, to evaluate"
        k = next((c.metrics.k for c in result.columns if c.metrics is not None), self.k)
        run = next(c.metrics.run_id for c in result.columns if c.metrics is not None)
        return bars, f"measured on your history: NDCG@{k}, mean ± 95 % CI (evaluation #{run})"

    def paired_text(self) -> str:
        return "\n".join(p.sentence for p in self.comparison.paired)

    # -- the highlighted cell --------------------------------------------------------------------

    @property
    def focused_column(self) -> int | None:
        focused = self.focused
        return focused.column if isinstance(focused, ColumnTable) else None

    @property
    def selected(self) -> Suggestion | None:
        focused = self.focused
        if self.comparison is None or not isinstance(focused, ColumnTable) or focused.cursor_row is None:
            return None
        return cell_suggestion(self.comparison, focused.column, focused.cursor_row)

    def on_ranked_list_selected(self, event: RankedList.Selected) -> None:
        self.action_explain()  # enter on a cell, as on the main screen: why it is there

    def action_focus_column(self, step: int) -> None:
        tables = list(self.query(ColumnTable))
        if not tables:
            return
        current = self.focused_column or 0
        target = tables[max(0, min(len(tables) - 1, current + step))]
        row = self.focused.cursor_row if isinstance(self.focused, ColumnTable) else 0
        target.focus()
        if row is not None and row < target.row_count:
            target.move_cursor(row=row)
        target.parent.scroll_visible()

    def action_play(self) -> None:
        if (item := self.selected) is not None:
            self.app.play_track(item.track)

    def action_like(self) -> None:
        if (item := self.selected) is not None:
            self.app.rate(item.track.id, "like")

    def action_dislike(self) -> None:
        if (item := self.selected) is not None:
            self.app.rate(item.track.id, "dislike")

    def action_queue(self) -> None:
        if (item := self.selected) is not None:
            self.app.queue_track(item.track, why="added from the comparison screen")

    def action_explain(self) -> None:
        column = self.focused_column
        if (item := self.selected) is None or column is None:
            return
        from mrs_tui.tui.screens.explain import ExplainScreen

        col = self.comparison.columns[column]
        self.app.push_screen(
            ExplainScreen(
                self.engine, item.track.id, seed=self.seed.track, backend=col.backend, recommender=col.recommender
            )
        )

    def action_train(self) -> None:
        column = self.focused_column
        if self.comparison is None or column is None:
            return
        col = self.comparison.columns[column]
        self.app.train_pair(col.recommender, col.backend)

    def action_switch_axis(self) -> None:
        column = self.focused_column
        col = self.comparison.columns[column] if self.comparison is not None and column is not None else None
        if self.axis == "backends":
            self.axis = "recommenders"
            self.backends = [col.backend if col else self.engine.backend]
            self.recommenders = None
        else:
            self.axis = "backends"
            self.recommenders = [col.recommender if col else self.engine.recommender]
            self.backends = None
        self.refresh_comparison()

    def action_cycle_k(self) -> None:
        self.k = K_CHOICES[(K_CHOICES.index(self.k) + 1) % len(K_CHOICES)] if self.k in K_CHOICES else 10
        self.refresh_comparison()

    def action_pick_backends(self) -> None:
        """Any subset of the analysed backends (one, on the recommenders axis)."""
        from mrs_tui.tui.screens.prompts import ChecklistPrompt

        analysed = self.analysed
        current = {c.backend for c in self.comparison.columns} if self.comparison else set()

        def picked(values: list[str] | None) -> None:
            if values:
                self.backends = values if self.axis == "backends" else values[:1]
                self.refresh_comparison()

        heading = "Backends to compare" if self.axis == "backends" else "The backend (the first checked one)"
        self.app.push_screen(ChecklistPrompt(heading, [(n, n in current) for n in analysed]), picked)

    def action_pick_recommenders(self) -> None:
        """The recommender of every column, or the recommenders to compare on the recommenders axis."""
        import recommenders
        from mrs_tui.tui.screens.prompts import ChecklistPrompt

        names = list(recommenders.REGISTRY)
        current = {c.recommender for c in self.comparison.columns} if self.comparison else set()

        def picked(values: list[str] | None) -> None:
            if values:
                self.recommenders = values if self.axis == "recommenders" else values[:1]
                self.refresh_comparison()

        heading = (
            "Recommenders to compare" if self.axis == "recommenders" else "The recommender (the first checked one)"
        )
        self.app.push_screen(ChecklistPrompt(heading, [(n, n in current) for n in names]), picked)

    def action_pick_seed(self) -> None:
        """Another seed for the same columns: the track, this session, the queue or a playlist."""
        self.read_playlists()

    @work(thread=True, exclusive=True, group="seeds", exit_on_error=False)
    def read_playlists(self) -> None:
        store = self.engine.store
        self.post_message(SeedsReady([(p.name, store.playlist_track_ids(p.id)) for p in store.playlists()]))

    def on_seeds_ready(self, message: SeedsReady) -> None:
        from mrs_tui.comparison import ComparisonSeed

        seeds: list[ComparisonSeed] = []
        labels: list[str] = []
        track = self.seed.track if self.seed.tracks is None else None
        if track is not None:
            seeds.append(self.seed)
            labels.append(f"the track: {self.seed.describe(self.engine.store)}")
        seeds.append(ComparisonSeed())
        labels.append("this session (your latest plays)")
        queue = getattr(self.app, "queue", None)
        queued = queue.track_ids() if queue is not None else []
        if queued:
            seeds.append(ComparisonSeed(tracks=tuple(queued), title="the queue"))
            labels.append(f"the queue ({len(queued)} tracks)")
        for name, ids in message.playlists:
            if ids:
                seeds.append(ComparisonSeed(tracks=tuple(ids), title=f"playlist {name}"))
                labels.append(f"playlist {name} ({len(ids)} tracks)")

        def picked(index: int | None) -> None:
            if index is not None:
                self.seed = seeds[index]
                self.refresh_comparison()

        self.app.push_screen(SeedPicker(seeds, labels), picked)

    def action_blind(self) -> None:
        if self.comparison is None or len(self.comparison.columns) < 2:
            self.notify("a blind comparison needs two columns", severity="warning")
            return
        from mrs_tui.tui.screens.ab import BlindScreen

        first = self.focused_column or 0
        second = first + 1 if first + 1 < len(self.comparison.columns) else first - 1
        pair = [self.comparison.columns[i] for i in (first, second)]
        self.app.push_screen(BlindScreen(self.engine, self.seed, [(c.backend, c.recommender) for c in pair], k=self.k))
