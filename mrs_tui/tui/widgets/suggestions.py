""" "Next up": the suggestion list with scores, *new* badges and why each track is there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical

from mrs_tui.tui.widgets.note import Note
from mrs_tui.tui.widgets.ranked import RankedList

if TYPE_CHECKING:
    from mrs_tui.engine import Suggestion, SuggestionList


class SuggestionTable(RankedList):
    """The ranked suggestions, drawn line by line (a new seed replaces them on every cursor move)."""

    BINDINGS = [
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("g", "jump(0)", "Top", show=False),
        Binding("G", "jump(-1)", "Bottom", show=False),
    ]
    DEFAULT_CSS = """
    SuggestionTable { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(flex=2, **kwargs)  # the title takes the spare width
        self.items: list[Suggestion] = []
        self.add_columns("#", "Rank", "Title", "Artist", "")

    def show(self, items: list[Suggestion]) -> None:
        self.items = items
        rows = [
            (
                str(rank),
                f"top {100 - item.percentile:.0f}%",
                item.track.display_title,
                item.track.artist or "",
                Text(" new ", style="bold black on bright_cyan") if item.new else "",
            )
            for rank, item in enumerate(items, 1)
        ]
        self.set_rows(rows, [str(item.track.id) for item in items])

    @property
    def selected(self) -> Suggestion | None:
        if not self.items or self.cursor_row is None or self.cursor_row >= len(self.items):
            return None
        return self.items[self.cursor_row]


class NextUp(Vertical):
    """Title line (which model, which mode), the table, and the highlighted item's reason."""

    DEFAULT_CSS = """
    NextUp { height: 1fr; }
    NextUp > #nextup-mode { color: $text-muted; height: auto; }
    NextUp > #nextup-reason { color: $text-muted; height: auto; min-height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Note("Select a track to see what could come next.", id="nextup-mode", markup=False)
        yield SuggestionTable(id="suggestions")
        yield Note("", id="nextup-reason", markup=False)

    @property
    def table(self) -> SuggestionTable:
        return self.query_one(SuggestionTable)

    result: SuggestionList | None = None  # the list on screen (the compare screen reuses it)

    def show(self, result: SuggestionList) -> None:
        self.result = result
        mode = result.describe()
        if result.seed is not None:
            mode += f" · seed: {result.seed.display_title}"
        if result.note:
            mode += f"\n{result.note}"
        self.query_one("#nextup-mode", Note).update(mode)
        self.table.show(result.items)
        if not result.items:  # otherwise the list's Highlighted (first row) shows the reason
            self.show_reason()

    def show_reason(self) -> None:
        item = self.table.selected
        self.query_one("#nextup-reason", Note).update(item.reason if item else "")

    def on_ranked_list_highlighted(self, event: RankedList.Highlighted) -> None:
        self.show_reason()
