"""The jobs screen (key 4): every running job with its progress, a moving ETA, and cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from mrs_tui.tui.keymap import RemappableBindings

BAR_WIDTH = 12


def bar(fraction: float | None) -> str:
    if fraction is None:
        return "·" * BAR_WIDTH
    filled = round(fraction * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


class JobsTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


class JobsScreen(RemappableBindings, Screen):
    BINDINGS = [
        Binding("x,c,delete", "cancel_job", "Cancel job"),
        Binding("escape", "app.show_screen('main')", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    JobsScreen #jobs-title { height: 1; padding: 0 1; }
    JobsScreen JobsTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="jobs-title")
        yield JobsTable(cursor_type="row", id="jobs-table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(JobsTable)
        table.add_columns("Job", "", "Done", "ETA", "Running", "Detail")
        self.show_jobs()
        table.focus()

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    def show_jobs(self) -> None:
        found = self.query(JobsTable)
        if not found or not found.first().columns:  # not mounted yet: on_mount shows them
            return
        table = found.first()
        rows = self.app.jobs.rows()
        keep = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(row.title, bar(row.fraction), row.progress, row.eta, row.running_for, row.detail, key=row.key)
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1))
        title = f"{len(rows)} running" if rows else "no job is running"
        self.query_one("#jobs-title", Static).update(f"jobs: {title} · x cancels the highlighted job · esc goes back")

    def highlighted_key(self) -> str | None:
        rows = self.app.jobs.rows()
        row = self.table.cursor_row
        return rows[row].key if rows and row is not None and row < len(rows) else None

    def action_cancel_job(self) -> None:
        key = self.highlighted_key()
        if key is None:
            self.app.notify("no job is running")
            return
        self.app.cancel_job(key)
