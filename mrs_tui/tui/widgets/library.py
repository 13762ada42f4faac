"""The library list: every track with its tags, duration and analysis status, filterable.

A virtual list (Textual's line API, as in Toolong): only the rows on screen are rendered,
so a 100,000-track library paints as fast as a ten-track one. Textual's DataTable measures
every cell of every row before its first paint — seconds for 10,000 tracks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from mrs_tui.tui.widgets.cells import fit

if TYPE_CHECKING:
    from mrs_tui.store import Track


def fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "--:--"
    total = int(round(seconds))
    return f"{total // 60}:{total % 60:02d}"


class TrackList(ScrollView, can_focus=True):
    """Tracks as rows; `filter_text` narrows them without a database trip."""

    COMPONENT_CLASSES = {
        "tracklist--cursor",
        "tracklist--odd",
        "tracklist--failed",
        "tracklist--missing",
        "tracklist--new",
        "tracklist--analysed",
        "tracklist--pending",
    }
    DEFAULT_CSS = """
    TrackList { height: 1fr; background: $surface; }
    TrackList > .tracklist--cursor { background: $accent 40%; text-style: bold; }
    TrackList:focus > .tracklist--cursor { background: $accent; color: $text; }
    TrackList > .tracklist--odd { background: $surface-lighten-1; }
    TrackList > .tracklist--failed { color: $error; }
    TrackList > .tracklist--missing { color: $warning; }
    TrackList > .tracklist--new { color: $secondary; }
    TrackList > .tracklist--analysed { color: $success; }
    TrackList > .tracklist--pending { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup,ctrl+u", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+d", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Top", show=False),
        Binding("end,G", "jump(-1)", "Bottom", show=False),
        Binding("enter", "select", "Play", show=False),
    ]

    cursor = reactive(0, repaint=False)  # watch_cursor repaints only the rows it touches

    @dataclass
    class Highlighted(Message):
        track_list: TrackList
        track_id: int

    @dataclass
    class Selected(Message):
        track_list: TrackList
        track_id: int

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tracks: dict[int, Track] = {}
        self.analysed: set[int] = set()
        self.played: set[int] = set()
        self.filter_text = ""
        self._rows: list[int] = []  # visible track ids, in order

    # -- data ----------------------------------------------------------------------------------

    def set_tracks(
        self, tracks: Iterable[Track], *, analysed: set[int] | None = None, played: set[int] | None = None
    ) -> None:
        self.tracks = {t.id: t for t in tracks}
        if analysed is not None:
            self.analysed = analysed
        if played is not None:
            self.played = played
        self._apply_filter()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._apply_filter()

    def matches(self, track: Track) -> bool:
        return track.matches(self.filter_text)

    def _apply_filter(self) -> None:
        selected = self.selected_track_id
        self._rows = [t.id for t in self.tracks.values() if self.matches(t)]
        self.virtual_size = Size(self.size.width, len(self._rows))
        index = self._rows.index(selected) if selected in self._rows else 0
        self.cursor = index
        self.refresh()
        self._announce()

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def selected_track_id(self) -> int | None:
        if not self._rows:
            return None
        return self._rows[min(self.cursor, len(self._rows) - 1)]

    @property
    def visible_track_ids(self) -> list[int]:
        return list(self._rows)

    def status_text(self, track: Track) -> Text:
        if track.status == "failed":
            return Text(f"failed: {track.error or '?'}", style="bold red")
        if track.status == "missing":
            return Text("missing", style="yellow")
        if track.id in self.analysed:
            return Text("analysed" if track.id in self.played else "new")
        return Text("pending")

    def _status_class(self, track: Track) -> str:
        if track.status in ("failed", "missing"):
            return f"tracklist--{track.status}"
        if track.id in self.analysed:
            return "tracklist--analysed" if track.id in self.played else "tracklist--new"
        return "tracklist--pending"

    # -- cursor ------------------------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        if self._rows:
            self.cursor = max(0, min(index, len(self._rows) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        # keep the cursor on screen; a move within the page repaints only the two rows it touches
        height = max(self.scrollable_content_region.height, 1)
        if new < self.scroll_y:
            self.scroll_to(y=new, animate=False)
            self.refresh()
        elif new >= self.scroll_y + height:
            self.scroll_to(y=new - height + 1, animate=False)
            self.refresh()
        else:
            for row in (old, new):
                self.refresh(Region(0, row - int(self.scroll_y), self.size.width, 1))
        if old != new:
            self._announce()

    def _announce(self) -> None:
        track_id = self.selected_track_id
        if track_id is not None:
            self.post_message(self.Highlighted(self, track_id))

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(self.scrollable_content_region.height - 1, 1))

    def action_jump(self, where: int) -> None:
        self.move_to(len(self._rows) - 1 if where < 0 else 0)

    def action_select(self) -> None:
        track_id = self.selected_track_id
        if track_id is not None:
            self.post_message(self.Selected(self, track_id))

    def on_click(self, event) -> None:
        row = int(self.scroll_y) + event.y
        if 0 <= row < len(self._rows):
            if row == self.cursor and event.chain >= 2:
                self.action_select()
            self.move_to(row)

    # -- rendering -------------------------------------------------------------------------------

    def column_widths(self) -> tuple[int, int, int, int, int]:
        width = max(self.scrollable_content_region.width, 20)
        time_w = 6
        if width < 64:  # a narrow terminal: no album column, so titles stay readable
            status_w = 6
            rest = width - time_w - status_w - 4
            title_w = rest * 2 // 3
            return title_w, rest - title_w, 0, time_w, status_w
        status_w = max(10, width // 6)
        rest = width - time_w - status_w - 4
        title_w = rest * 2 // 5
        artist_w = rest * 3 // 10
        album_w = rest - title_w - artist_w
        return title_w, artist_w, album_w, time_w, status_w

    def header_text(self) -> str:
        widths = self.column_widths()
        names = ("Title", "Artist", "Album", "Time", "Status")
        return " ".join(fit(n, w) for n, w in zip(names, widths, strict=True))

    def render_lines(self, crop: Region) -> list[Strip]:
        # Styles once per pass, not per line: `rich_style` walks every ancestor's styles.
        base = self.rich_style
        self._pass_styles = (
            base,
            base + self.get_component_rich_style("tracklist--cursor"),
            base + self.get_component_rich_style("tracklist--odd"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        base, cursor, odd = self._pass_styles
        if row >= len(self._rows):
            return Strip.blank(width, base)
        track = self.tracks[self._rows[row]]
        title_w, artist_w, album_w, time_w, status_w = self.column_widths()
        style = cursor if row == self.cursor else odd if row % 2 else base
        status_style = style + self.get_component_rich_style(self._status_class(track), partial=True)
        cells = " ".join(
            (
                fit(track.display_title, title_w),
                fit(track.artist or "", artist_w),
                fit(track.album or "", album_w),
                fmt_duration(track.duration).rjust(time_w),
            )
        )
        segments = [Segment(cells + " ", style), Segment(fit(self.status_text(track).plain, status_w), status_style)]
        strip = Strip(segments)
        return strip.adjust_cell_length(width, style if isinstance(style, Style) else None)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._rows))


class TrackListHeader(Static):
    """Column titles above the list, sized like its columns."""

    DEFAULT_CSS = """
    TrackListHeader { height: 1; text-style: bold; background: $panel; }
    """

    def show_for(self, track_list: TrackList) -> None:
        self.update(track_list.header_text())
