"""A short ranked list drawn line by line: the compare screen's columns and the "next up" list.

Textual's DataTable renders every cell through Rich with its own padding and styles, and a
fresh set of rows (every new seed) renders them all again: with three columns of ten rows
that was most of the time from a keypress to a filled compare screen. This list keeps its
rows as plain cells and draws each visible line as one strip, so replacing the rows costs
about as much as drawing the few lines that are on screen. It offers the part of DataTable's
interface the screens use (`add_columns`, `add_row`, `clear`, `row_count`, `cursor_row`,
`move_cursor`, `get_row_at`) and posts `Highlighted` / `Selected` when the cursor moves or
enter is pressed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mrs_tui.tui.widgets.cells import fit

Cell = str | Text


class RankedList(ScrollView, can_focus=True):
    """Rows under a one-line header; `flex` names the column that takes the spare width."""

    COMPONENT_CLASSES = {"ranked-list--header", "ranked-list--cursor"}
    DEFAULT_CSS = """
    RankedList { height: 1fr; background: $surface; overflow-x: hidden; }
    RankedList > .ranked-list--header { text-style: bold; color: $text-accent; background: $panel; }
    RankedList > .ranked-list--cursor { background: $accent 30%; }
    RankedList:focus > .ranked-list--cursor { background: $accent; color: $text; text-style: bold; }
    """
    # No letter keys here: the screens give letters their own meanings (k cycles K on the
    # compare screen); a list that wants vi keys adds them.
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "Top", show=False),
        Binding("end", "jump(-1)", "Bottom", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    cursor_row = reactive(0, init=False, repaint=False)  # watch_cursor_row repaints two lines

    @dataclass
    class Highlighted(Message):
        ranked_list: RankedList
        cursor_row: int

        @property
        def control(self) -> RankedList:
            return self.ranked_list

    @dataclass
    class Selected(Message):
        ranked_list: RankedList
        cursor_row: int

        @property
        def control(self) -> RankedList:
            return self.ranked_list

    def __init__(self, *, flex: int = -1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.flex = flex
        self.columns: list[str] = []
        self.rows: list[tuple[Cell, ...]] = []
        self.keys: list[str | None] = []
        self._widths: list[int] = []

    # -- DataTable's interface, the part the screens use ------------------------------------------

    def add_columns(self, *labels: str) -> None:
        self.columns.extend(labels)
        self._rows_changed()

    def add_row(self, *cells: Cell, key: str | None = None) -> None:
        self.rows.append(tuple(cells))
        self.keys.append(key)
        self._rows_changed()

    def set_rows(self, rows: list[tuple[Cell, ...]], keys: list[str | None] | None = None) -> None:
        """Replace every row at once (one repaint instead of one per row)."""
        self.rows = [tuple(r) for r in rows]
        self.keys = list(keys) if keys is not None else [None] * len(self.rows)
        self._widths = []
        self.set_reactive(RankedList.cursor_row, 0)
        if not self.is_mounted:  # filled before mounting: drawn with its first paint, sized for it
            self.set_reactive(ScrollView.virtual_size, self._content_size())
            return
        self.scroll_to(y=0, animate=False)
        self._rows_changed()
        if self.rows:
            self.post_message(self.Highlighted(self, 0))

    def clear(self) -> None:
        self.set_rows([])

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def get_row_at(self, row: int) -> list[Cell]:
        return list(self.rows[row])

    def move_cursor(self, *, row: int | None = None, column: int | None = None, animate: bool = False) -> None:
        if row is not None and self.rows:
            self.cursor_row = max(0, min(row, len(self.rows) - 1))

    # -- cursor ------------------------------------------------------------------------------------

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(old)
        self.refresh_line(new)
        height = max(self.scrollable_content_region.height - 1, 1)  # less the header line
        if new < self.scroll_y:
            self.scroll_to(y=new, animate=False)
        elif new >= self.scroll_y + height:
            self.scroll_to(y=new - height + 1, animate=False)
        if old != new and self.rows:
            self.post_message(self.Highlighted(self, new))

    def refresh_line(self, row: int) -> None:
        y = row - int(self.scroll_y) + 1
        self.refresh(Region(0, y, self.size.width, 1))

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(row=self.cursor_row + direction * max(self.scrollable_content_region.height - 2, 1))

    def action_jump(self, where: int) -> None:
        self.move_cursor(row=len(self.rows) - 1 if where < 0 else 0)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self, self.cursor_row))

    def on_click(self, event) -> None:
        row = int(self.scroll_y) + event.y - 1
        if 0 <= row < len(self.rows):
            if row == self.cursor_row and event.chain >= 2:
                self.action_select()
            self.move_cursor(row=row)

    # -- rendering -------------------------------------------------------------------------------

    def _content_size(self) -> Size:
        # The rows and the header line; no sideways scrolling: the flex column shrinks instead.
        return Size(0, len(self.rows) + 1)

    def _rows_changed(self) -> None:
        self._widths = []
        self.virtual_size = self._content_size()
        self.refresh()

    def column_widths(self, width: int) -> list[int]:
        """Each column as wide as its widest cell; the flex column gets what is left (or shrinks)."""
        if self._widths and sum(self._widths) + len(self._widths) - 1 == width:
            return self._widths
        n = len(self.columns)
        if n == 0:
            return []
        widths = [cell_len(label) for label in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row[:n]):
                widths[i] = max(widths[i], cell_len(cell.plain if isinstance(cell, Text) else str(cell)))
        flex = self.flex % n
        cap = max(8, width // 4)  # no other column squeezes the flex one (long artist names)
        widths = [w if i == flex else min(w, cap) for i, w in enumerate(widths)]
        others = sum(w for i, w in enumerate(widths) if i != flex) + n - 1
        widths[flex] = max(width - others, 1)
        self._widths = widths
        return widths

    def _line(self, cells: tuple[Cell, ...], widths: list[int], style: Style) -> Strip:
        """One row as segments: each cell cut or padded to its width, in its own style over the
        row's. Rich's text rendering would cost ten times as much for these one-style cells."""
        segments: list[Segment] = []
        for i, width in enumerate(widths):
            cell = cells[i] if i < len(cells) else ""
            if i:
                segments.append(Segment(" ", style))
            if isinstance(cell, Text) and cell.spans:  # several styles in one cell: Rich cuts it
                text = cell.copy()
                text.truncate(width, overflow="ellipsis", pad=True)
                segments.extend(
                    Segment(s.text, style + s.style if s.style else style)
                    for s in text.render(self.app.console, end="")
                )
                continue
            plain, own = (cell.plain, cell.style) if isinstance(cell, Text) else (str(cell), None)
            own_style = (Style.parse(own) if isinstance(own, str) else own) if own else None
            segments.append(Segment(fit(plain, width), style + own_style if own_style else style))
        return Strip(segments).adjust_cell_length(self.scrollable_content_region.width, style)

    def render_lines(self, crop: Region) -> list[Strip]:
        # Styles once per pass, not per line: `rich_style` walks every ancestor's styles.
        base = self.rich_style
        self._pass_styles = (
            base,
            base + self.get_component_rich_style("ranked-list--header"),
            base + self.get_component_rich_style("ranked-list--cursor"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base, header, cursor = self._pass_styles
        widths = self.column_widths(width)
        if y == 0:
            return self._line(tuple(self.columns), widths, header)
        row = int(self.scroll_y) + y - 1
        if row >= len(self.rows):
            return Strip.blank(width, base)
        return self._line(self.rows[row], widths, cursor if row == self.cursor_row else base)

    def on_resize(self) -> None:
        self._widths = []
        self.virtual_size = self._content_size()
