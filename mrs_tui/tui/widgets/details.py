"""The selected track's details: tags, file, status, and what the audio model hears in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from textual.widgets import Static

from mrs_tui.tui.widgets.cells import literal
from mrs_tui.tui.widgets.library import fmt_duration

if TYPE_CHECKING:
    from mrs_tui.engine import TrackFacts
    from mrs_tui.store import Track


class TrackDetails(Static):
    # A fixed height: every cursor move shows another track, and an automatic height would
    # lay out the whole screen each time (the facts arriving a moment later, once more).
    DEFAULT_CSS = """
    TrackDetails { height: 12; padding: 0 1; }
    """

    def show(self, track: Track | None, *, facts: TrackFacts | None = None) -> None:
        """`facts` (plays, audio tags) arrive from a worker; until then their rows say so."""
        if track is None:
            self.update("", layout=False)
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("Title", literal(track.display_title))
        grid.add_row("Artist", literal(track.artist or "—"))
        grid.add_row("Album", literal(" · ".join(filter(None, (track.album, track.year))) or "—"))
        grid.add_row("Genre", literal(track.genre or "—"))
        grid.add_row("Length", fmt_duration(track.duration))
        if facts is None:
            grid.add_row("Played", "…")
        else:
            plays = facts.plays
            grid.add_row("Played", f"{plays} time{'s' if plays != 1 else ''}" if plays else "never (a new track)")
            if facts.sounds_like:
                grid.add_row("Sounds like", literal(", ".join(facts.sounds_like[:5])))
        status = track.status if track.status != "failed" else f"failed: {track.error}"
        grid.add_row("Status", literal(status))
        grid.add_row("File", literal(track.display_path))
        self.update(grid, layout=False)
