"""Backends side by side: the same seed and session, one column of suggestions per backend.

This is the product's point in one screen: the backends that top tagging benchmarks do not
necessarily suggest what *you* would play next. Columns show only backends that have
analysed tracks; the line under each says how much its list overlaps with the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

import backends
from mrs_tui.engine import Engine, SuggestionList

COLUMN_K = 10


@dataclass
class ComparisonReady(Message):
    results: list[SuggestionList]


class CompareScreen(Screen):
    BINDINGS = [Binding("escape,v", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    CompareScreen #columns { height: 1fr; }
    CompareScreen .column { width: 1fr; border: round $primary-darken-2; }
    CompareScreen .column DataTable { height: 1fr; }
    CompareScreen #compare-title { height: auto; padding: 0 1; }
    CompareScreen .overlap { color: $text-muted; height: auto; }
    """

    def __init__(self, engine: Engine, seed: int | None) -> None:
        super().__init__()
        self.engine = engine
        self.seed = seed

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("comparing backends…", id="compare-title")
        yield Horizontal(id="columns")
        yield Footer()

    def on_mount(self) -> None:
        self.compare()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def compare(self) -> None:
        counts = self.engine.store.embedding_counts()
        results = []
        for spec in backends.list_specs():
            if counts.get((spec.name, self.engine.version(spec.name)), (0, 0))[0] == 0:
                continue
            results.append(self.engine.suggest(self.seed, k=COLUMN_K, backend=spec.name, recommender="knn"))
        self.post_message(ComparisonReady(results))

    def on_comparison_ready(self, message: ComparisonReady) -> None:
        results = message.results
        seed = self.engine.store.track(self.seed) if self.seed is not None else None
        title = f"seed: {seed.display_title} — {seed.artist or '?'}" if seed else "no seed: your session"
        if len(results) < 2:
            title += "\nonly one backend has analysed tracks: pick another with b on the main screen to compare"
        self.query_one("#compare-title", Static).update(title)
        columns = self.query_one("#columns", Horizontal)
        sets = [{s.track.id for s in r.items} for r in results]
        for i, result in enumerate(results):
            others = set().union(*(s for j, s in enumerate(sets) if j != i)) if len(sets) > 1 else set()
            shared = len(sets[i] & others)
            table = DataTable(cursor_type="row")
            table.add_columns("Score", "Title", "Artist")
            for item in result.items:
                table.add_row(f"{item.score:.3f}", item.track.display_title, item.track.artist or "")
            column = Vertical(
                Label(f"[b]{result.backend}[/b] ({result.version})"),
                table,
                Label(f"{shared} of {len(sets[i])} also suggested by another backend", classes="overlap"),
                classes="column",
            )
            columns.mount(column)
