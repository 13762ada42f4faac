"""The queue screen (key 2): what plays next, why each track is there, and editing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Input, Static

from mrs_tui.tui.keymap import RemappableBindings
from mrs_tui.tui.widgets.cells import literal
from mrs_tui.tui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from mrs_tui.store import Track


class QueueTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]


class QueueScreen(RemappableBindings, Screen):
    BINDINGS = [
        Binding("enter", "play_entry", "Play"),
        Binding("J", "move(1)", "Move down", id="move-down"),
        Binding("K", "move(-1)", "Move up", id="move-up"),
        Binding("x,delete", "remove", "Remove"),
        Binding("D", "clear", "Clear"),
        Binding("ctrl+s", "save", "Save as playlist"),
        Binding("w", "explain", "Why"),
        Binding("escape", "app.show_screen('main')", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    QueueScreen #queue-title { height: 1; padding: 0 1; }
    QueueScreen QueueTable { height: 1fr; }
    QueueScreen #queue-why { height: auto; max-height: 4; padding: 0 1; color: $text-muted; border-top: solid $primary-darken-2; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="queue-title")
        yield QueueTable(cursor_type="row", id="queue-table")
        yield Static("", id="queue-why")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(QueueTable)
        table.add_columns("#", "", "Title", "Artist", "Why")
        self.show_queue()
        table.focus()

    @property
    def table(self) -> QueueTable:
        return self.query_one(QueueTable)

    def show_queue(self) -> None:
        queue = self.app.queue
        table = self.table
        row = table.cursor_row
        table.clear()
        playing = self.app.player is not None and self.app.player.playing
        for index, entry in enumerate(queue.entries):
            track = self.app.track_info(entry.track_id)
            current = "▶" if playing else "■"  # the entry the queue stands on, playing or not
            mark = current if index == queue.position else ("·" if index < queue.position else "")
            table.add_row(
                str(index + 1),
                mark,
                literal(track.display_title if track else f"track {entry.track_id}"),
                literal((track.artist or "") if track else ""),
                Text(entry.why, overflow="ellipsis", no_wrap=True),
                key=str(entry.uid),
            )
        if queue.entries:
            table.move_cursor(row=min(row, len(queue.entries) - 1))
        radio = self.app.radio
        upcoming = len(queue.upcoming)
        title = f"queue: {upcoming} up next, {len(queue.played)} played"
        if radio is not None:
            title += f" · radio from {radio.seed_label} ({radio.recommender}, refills below {radio.refill_below})"
        title += " · enter plays · J/K move · x removes · D clears · ctrl+s saves"
        self.query_one("#queue-title", Static).update(title)
        self.show_why()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_why()

    def show_why(self) -> None:
        entry = self._entry()
        self.query_one("#queue-why", Static).update(entry.explanation() if entry else "the queue is empty")

    def _entry(self):
        queue = self.app.queue
        row = self.table.cursor_row
        return queue.entries[row] if queue.entries and row is not None and row < len(queue.entries) else None

    def highlighted_track(self) -> Track | None:
        entry = self._entry()
        return self.app.track_info(entry.track_id) if entry else None

    # -- actions -----------------------------------------------------------------------------------

    def action_play_entry(self) -> None:
        if self._entry() is not None:
            self.app.play_queue_entry(self.table.cursor_row)

    def action_explain(self) -> None:
        """Why the highlighted entry is there, with the diversity rules that let it through."""
        entry = self._entry()
        if entry is None or self.app.engine is None:
            return
        from mrs_tui.tui.screens.explain import ExplainScreen

        self.app.push_screen(ExplainScreen(self.app.engine, entry.track_id, queue_entry=entry))

    def action_move(self, offset: int) -> None:
        row = self.table.cursor_row
        try:
            target = self.app.queue.move(row, offset)
        except IndexError:
            self.app.notify("only upcoming tracks move")
            return
        self.app.queue_changed()
        self.table.move_cursor(row=target)

    def action_remove(self) -> None:
        if self._entry() is None:
            return
        self.app.queue.remove(self.table.cursor_row)
        self.app.queue_changed()

    def action_clear(self) -> None:
        dropped = self.app.queue.clear()
        self.app.notify(f"removed {dropped} upcoming tracks")
        self.app.queue_changed()

    def action_save(self) -> None:
        self.app.save_queue_as_playlist()


class NamePrompt(ModalScreen[str | None]):
    """One line of text (a playlist name, a file path); enter accepts, esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    NamePrompt { align: center middle; }
    NamePrompt > Static, NamePrompt > Input { width: 70; }
    NamePrompt > Static { background: $surface; padding: 0 1; }
    """

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        yield Static(self.question)
        yield Input(value=self.value, id="prompt")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
