"""The library table: every track with its tags, duration and analysis status, filterable."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from mrs_tui.store import Track


def fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "--:--"
    total = int(round(seconds))
    return f"{total // 60}:{total % 60:02d}"


class TrackTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    """Tracks as rows keyed by track id; `filter_text` narrows them without a database trip."""

    DEFAULT_CSS = """
    TrackTable { height: 1fr; }
    """

    COLUMNS = ("Title", "Artist", "Album", "Time", "Status")

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.tracks: dict[int, Track] = {}
        self.analysed: set[int] = set()
        self.played: set[int] = set()
        self.filter_text = ""

    def on_mount(self) -> None:
        self._status_column = self.add_columns(*self.COLUMNS)[-1]

    def set_tracks(
        self, tracks: Iterable[Track], *, analysed: set[int] | None = None, played: set[int] | None = None
    ) -> None:
        self.tracks = {t.id: t for t in tracks}
        if analysed is not None:
            self.analysed = analysed
        if played is not None:
            self.played = played
        self.refresh_rows()

    def status_text(self, track: Track) -> Text:
        if track.status == "failed":
            return Text(f"failed: {track.error or '?'}", style="bold red")
        if track.status == "missing":
            return Text("missing", style="yellow")
        if track.id in self.analysed:
            return Text(
                "new" if track.id not in self.played else "analysed",
                style="green" if track.id in self.played else "cyan",
            )
        return Text("pending", style="dim")

    def matches(self, track: Track) -> bool:
        if not self.filter_text:
            return True
        haystack = " ".join(filter(None, (track.title, track.artist, track.album, track.genre, track.path))).lower()
        return all(word in haystack for word in self.filter_text.lower().split())

    def refresh_rows(self) -> None:
        selected = self.selected_track_id
        self.clear()
        for track in self.tracks.values():
            if self.matches(track):
                self.add_row(
                    track.display_title,
                    track.artist or "",
                    track.album or "",
                    fmt_duration(track.duration),
                    self.status_text(track),
                    key=str(track.id),
                )
        if selected is not None and str(selected) in self.rows:
            self.move_cursor(row=self.get_row_index(str(selected)))

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.refresh_rows()

    def mark_analysed(self, ids: set[int], played: set[int] | None = None) -> None:
        self.analysed = ids
        if played is not None:
            self.played = played
        for track_id in self.tracks:
            key = str(track_id)
            if key in self.rows:
                self.update_cell(key, self._status_column, self.status_text(self.tracks[track_id]))

    @property
    def selected_track_id(self) -> int | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or refreshing table has no cursor row
            return None
        return int(key.value) if key.value is not None else None

    @property
    def visible_track_ids(self) -> list[int]:
        return [int(key.value) for key in self.rows]
