"""The history screen (key 3): sessions with their plays, skips, likes and dislikes, where each
came from, deleting (it is personal data) and importing listening exports."""

from __future__ import annotations

import functools
import shlex
import time
from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Static

from mrs_tui.tui.keymap import RemappableBindings
from mrs_tui.tui.screens.queue import NamePrompt
from mrs_tui.tui.widgets.cells import literal
from mrs_tui.tui.widgets.footer import KeyFooter

SOURCES = {"app": "played here", "demo": "generated demo"}
SERVICES = {"lastfm": "Last.fm", "listenbrainz": "ListenBrainz", "spotify": "Spotify"}


def source_label(source: str) -> str:
    if source.startswith("import:"):
        service = source.split(":", 1)[1]
        return f"imported ({SERVICES.get(service, service)})"
    return SOURCES.get(source, source)


class HistoryTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]


@dataclass
class HistoryLoaded(Message):
    sessions: list[dict]
    plays: dict[int, list[dict]]  # session id -> plays with titles


@dataclass
class ImportPlanned(Message):
    plan: object  # mrs_tui.imports.ImportPlan


class HistoryScreen(RemappableBindings, Screen):
    BINDINGS = [
        Binding("x,delete", "delete", "Delete"),
        Binding("D", "delete_all", "Delete all"),
        Binding("i", "import", "Import export"),
        Binding("escape", "app.show_screen('main')", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    HistoryScreen #history-title { height: 1; padding: 0 1; }
    HistoryScreen #sessions { height: 1fr; }
    HistoryScreen #plays { height: 1fr; border-top: solid $primary-darken-2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[dict] = []
        self.plays: dict[int, list[dict]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading the history…", id="history-title")
        yield HistoryTable(cursor_type="row", id="sessions")
        yield HistoryTable(cursor_type="row", id="plays")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#sessions", DataTable).add_columns("When", "Source", "Heard", "Skips", "Likes", "Dislikes")
        self.query_one("#plays", DataTable).add_columns("Time", "Event", "Artist", "Title")
        self.query_one("#sessions").focus()
        self.reload()

    # -- loading (in a worker: no database query on the UI thread) ----------------------------------

    def reload(self) -> None:
        self.load_history()

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def load_history(self) -> None:
        store = self.app.engine.store
        sessions = store.session_summaries()
        every_play = store.plays()
        titles = {t.id: t for t in store.tracks(ids={p.track_id for p in every_play})}  # not the whole library
        plays: dict[int, list[dict]] = {}
        for play in every_play:
            track = titles.get(play.track_id)
            plays.setdefault(play.session_id, []).append(
                {
                    "id": play.id,
                    "at": play.at,
                    "event": play.event,
                    "artist": (track.artist if track else None) or "?",
                    "title": track.display_title if track else f"track {play.track_id}",
                }
            )
        self.post_message(HistoryLoaded(sessions, plays))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        self.sessions, self.plays = message.sessions, message.plays
        table = self.query_one("#sessions", DataTable)
        row = table.cursor_row or 0
        table.clear()
        for s in self.sessions:
            table.add_row(
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s["started_at"])),
                source_label(s["source"]),
                str(s["heard"] or 0),
                str(s["skips"] or 0),
                str(s["likes"] or 0),
                str(s["dislikes"] or 0),
                key=str(s["id"]),
            )
        if self.sessions:
            table.move_cursor(row=min(row, len(self.sessions) - 1))
        total = sum(s["events"] for s in self.sessions)
        self.query_one("#history-title", Static).update(
            f"{len(self.sessions)} sessions, {total} events · x deletes the highlighted play or session · "
            "D deletes everything · i imports a Last.fm/ListenBrainz/Spotify export"
        )
        self.show_plays()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "sessions":
            self.show_plays()

    def current_session(self) -> dict | None:
        row = self.query_one("#sessions", DataTable).cursor_row
        return self.sessions[row] if self.sessions and row is not None and row < len(self.sessions) else None

    def show_plays(self) -> None:
        table = self.query_one("#plays", DataTable)
        table.clear()
        session = self.current_session()
        for p in self.plays.get(session["id"], []) if session else []:
            table.add_row(
                time.strftime("%H:%M:%S", time.localtime(p["at"])),
                p["event"],
                literal(p["artist"]),
                literal(p["title"]),
                key=str(p["id"]),
            )

    # -- deleting --------------------------------------------------------------------------------------

    def action_delete(self) -> None:
        plays_table = self.query_one("#plays", DataTable)
        session = self.current_session()
        if session is None:
            return
        if self.focused is plays_table:
            plays = self.plays.get(session["id"], [])
            row = plays_table.cursor_row
            if plays and row is not None and row < len(plays):
                self.forget("play", plays[row]["id"])
        else:
            self.forget("session", session["id"])

    def action_delete_all(self) -> None:
        def confirmed(answer: str | None) -> None:
            if answer == "delete":
                self.forget("all", 0)

        self.app.push_screen(NamePrompt("Delete the whole history? Type delete and press enter:"), confirmed)

    @work(thread=True, group="history-edit", exit_on_error=False)
    def forget(self, what: str, ident: int) -> None:
        store = self.app.engine.store
        if what == "play":
            store.delete_play(ident)
            text = "deleted the play"
        elif what == "session":
            text = f"deleted the session and its {store.delete_session(ident)} events"
        else:
            text = f"deleted the whole history ({store.delete_history()} events)"
        self.app.call_from_thread(self.app.notify, text, title="History")
        self.load_history()

    # -- importing -------------------------------------------------------------------------------------

    def on_worker_state_changed(self, event) -> None:
        self.app.track_worker(event.worker, event.state)  # imports are listed on the jobs screen

    def action_import(self) -> None:
        def chosen(paths: str | None) -> None:
            if paths:
                self.plan_import(shlex.split(paths))

        self.app.push_screen(NamePrompt("Export files to import (paths, space-separated):"), chosen)

    @work(thread=True, exclusive=True, group="import", exit_on_error=False)
    def plan_import(self, paths: list[str]) -> None:
        from mrs_tui.imports import plan_import

        self.post_message(ImportPlanned(plan_import(self.app.engine.store, paths)))

    def on_import_planned(self, message: ImportPlanned) -> None:
        plan = message.plan

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.apply_import(plan)

        self.app.push_screen(ImportReport(plan.text(), importable=plan.matched > 0), confirmed)

    def apply_import(self, plan) -> None:
        """Write the plan in the app's worker: it goes on (and stays on the jobs screen) if this screen closes."""
        self.app.run_worker(
            functools.partial(self._write_import, plan),
            thread=True,
            exclusive=True,
            group="import",
            exit_on_error=False,
            name="apply_import",
        )

    def _write_import(self, plan) -> None:
        from mrs_tui.imports import apply_import

        result = apply_import(self.app.engine.store, plan, gap_minutes=self.app.settings.session_gap_minutes)
        self.app.call_from_thread(self.app.notify, result.text(), title="Import")
        if self.is_attached:
            self.load_history()


class ImportReport(ModalScreen[bool]):
    """The dry-run report; enter writes it, esc leaves everything as it was."""

    BINDINGS = [Binding("enter", "accept", "Import"), Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ImportReport { align: center middle; }
    ImportReport > VerticalScroll { width: 90%; max-width: 110; height: auto; max-height: 80%;
        border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, text: str, *, importable: bool) -> None:
        super().__init__()
        self.text = text
        self.importable = importable

    def compose(self) -> ComposeResult:
        footer = "enter imports · esc cancels (nothing is written)" if self.importable else "nothing to import · esc"
        with VerticalScroll():
            yield Static(self.text, id="import-report", markup=False)
            yield Static(footer)

    def action_accept(self) -> None:
        self.dismiss(self.importable)

    def action_cancel(self) -> None:
        self.dismiss(False)
