"""The playlists screen (key 5): open, edit and delete named playlists.

Left, the playlists; right, the highlighted playlist's tracks. On the playlists: enter (or a) adds
one to the queue, R starts a radio from it, e renames it, x deletes it (after a yes), E writes
an M3U file. On the tracks (tab switches): J/K move one, x removes one. Every edit is written
at once, in a worker; the lists are what that worker read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from mrs_tui.tui.keymap import RemappableBindings
from mrs_tui.tui.screens.prompts import ConfirmPrompt
from mrs_tui.tui.screens.queue import NamePrompt
from mrs_tui.tui.widgets.cells import literal


@dataclass
class PlaylistsLoaded(Message):
    playlists: list[tuple[str, list[int]]]  # (name, track ids in order), by name
    select: str | None = None


class PlaylistTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]


class PlaylistsScreen(RemappableBindings, Screen):
    BINDINGS = [
        Binding("a", "queue_playlist", "Add to queue"),
        Binding("R", "radio", "Radio"),
        Binding("e", "rename", "Rename"),
        Binding("x,delete", "remove", "Delete/remove"),
        Binding("J", "move(1)", "Move down", id="move-down", show=False),
        Binding("K", "move(-1)", "Move up", id="move-up", show=False),
        Binding("E", "export", "Export M3U"),
        Binding("escape", "app.show_screen('main')", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    PlaylistsScreen #playlists-title { height: 1; padding: 0 1; }
    PlaylistsScreen #playlists-panes { height: 1fr; }
    PlaylistsScreen #playlist-names { width: 2fr; border: round $primary-darken-2; }
    PlaylistsScreen #playlist-tracks { width: 3fr; border: round $primary-darken-2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.playlists: list[tuple[str, list[int]]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading playlists…", id="playlists-title")
        with Horizontal(id="playlists-panes"):
            yield PlaylistTable(cursor_type="row", id="playlist-names")
            yield PlaylistTable(cursor_type="row", id="playlist-tracks")
        yield Footer()

    def on_mount(self) -> None:
        self.names.add_columns("Playlist", "Tracks")
        self.tracks.add_columns("#", "Title", "Artist")
        self.names.focus()
        self.load()

    @property
    def names(self) -> PlaylistTable:
        return self.query_one("#playlist-names", PlaylistTable)

    @property
    def tracks(self) -> PlaylistTable:
        return self.query_one("#playlist-tracks", PlaylistTable)

    # -- reading and writing (workers) -------------------------------------------------------------

    @work(thread=True, exclusive=True, group="playlists-read", exit_on_error=False)
    def load(self, select: str | None = None) -> None:
        store = self.app.engine.store
        self.post_message(
            PlaylistsLoaded([(p.name, store.playlist_track_ids(p.id)) for p in store.playlists()], select)
        )

    @work(thread=True, group="playlists-edit", exit_on_error=False)
    def edit(self, change, select: str | None = None) -> None:
        """Run `change(store)` (one write), then read the playlists again."""
        store = self.app.engine.store
        note = change(store)
        if note:
            self.app.call_from_thread(self.app.notify, note, title="Playlists")
        self.post_message(
            PlaylistsLoaded([(p.name, store.playlist_track_ids(p.id)) for p in store.playlists()], select)
        )

    def on_playlists_loaded(self, message: PlaylistsLoaded) -> None:
        current = self.current_name()
        self.playlists = message.playlists
        table = self.names
        table.clear()
        for name, ids in self.playlists:
            table.add_row(literal(name), str(len(ids)), key=name)
        wanted = message.select or current
        names = [name for name, _ids in self.playlists]
        if wanted in names:
            table.move_cursor(row=names.index(wanted))
        count = len(self.playlists)
        self.query_one("#playlists-title", Static).update(
            f"{count} playlist{'s' if count != 1 else ''} · enter adds to the queue · R radio · e renames · "
            "x deletes · E exports M3U · tab: its tracks (J/K move, x removes)"
            if count
            else "no playlists yet · ctrl+s saves the queue (2) or the suggestions (1) as one"
        )
        self.show_tracks()

    # -- what is highlighted -------------------------------------------------------------------

    def current_name(self) -> str | None:
        row = self.names.cursor_row
        return self.playlists[row][0] if self.playlists and row is not None and row < len(self.playlists) else None

    def current_ids(self) -> list[int]:
        row = self.names.cursor_row
        return list(self.playlists[row][1]) if self.playlists and row < len(self.playlists) else []

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_queue_playlist()  # enter, or a click on a row

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.names:
            self.show_tracks()

    def show_tracks(self, cursor: int | None = None) -> None:
        table = self.tracks
        keep = table.cursor_row if cursor is None else cursor
        table.clear()
        for index, track_id in enumerate(self.current_ids()):
            track = self.app.track_info(track_id)
            title = track.display_title if track else f"track {track_id} (not in the library)"
            table.add_row(str(index + 1), literal(title), literal((track.artist or "") if track else ""))
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        name = self.current_name()
        table.border_title = name or ""

    def highlighted_track(self):
        """For the app's z (queue) and R (radio) on the tracks list."""
        ids = self.current_ids()
        row = self.tracks.cursor_row
        if self.focused is self.tracks and ids and row < len(ids):
            return self.app.track_info(ids[row])
        return None

    # -- actions ---------------------------------------------------------------------------------

    def action_queue_playlist(self) -> None:
        name, ids = self.current_name(), self.current_ids()
        if name is None:
            return
        if self.focused is self.tracks:
            track = self.highlighted_track()
            if track is not None:
                self.app.queue_track(track, why=f"from playlist {name!r}")
            return
        self.app.queue.add(ids, why=f"from playlist {name!r}")
        self.app.queue_changed()
        self.app.notify(f"queued {len(ids)} tracks from {name!r} ({len(self.app.queue.upcoming)} up next)")

    def action_radio(self) -> None:
        name = self.current_name()
        if name is not None:
            self.app.start_radio([], playlist=name)
            self.app.notify(f"radio from playlist {name!r}", title="Radio")

    def action_rename(self) -> None:
        old = self.current_name()
        if old is None:
            return
        taken = {name for name, _ids in self.playlists}

        def renamed(new: str | None) -> None:
            if not new or new == old:
                return
            if new in taken:
                self.app.notify(f"there is already a playlist named {new!r}", severity="warning")
                return

            def change(store) -> str:
                store.rename_playlist(old, new)
                return f"renamed {old!r} to {new!r}"

            self.edit(change, select=new)

        self.app.push_screen(NamePrompt(f"Rename playlist {old!r} to:", value=old), renamed)

    def action_remove(self) -> None:
        name, ids = self.current_name(), self.current_ids()
        if name is None:
            return
        if self.focused is self.tracks:
            row = self.tracks.cursor_row
            if not ids or row >= len(ids):
                return
            del ids[row]
            self._save(name, ids, cursor=row)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.edit(lambda store: f"deleted playlist {name!r}" if store.delete_playlist(name) else None)

        self.app.push_screen(ConfirmPrompt(f"Delete playlist {name!r} ({len(ids)} tracks)?"), answered)

    def action_move(self, offset: int) -> None:
        name, ids = self.current_name(), self.current_ids()
        row = self.tracks.cursor_row
        if name is None or self.focused is not self.tracks or not ids:
            return
        target = max(0, min(len(ids) - 1, row + offset))
        if target == row:
            return
        ids.insert(target, ids.pop(row))
        self._save(name, ids, cursor=target)

    def _save(self, name: str, ids: list[int], *, cursor: int) -> None:
        # Shown at once from the edited list; the worker writes it and reads everything back.
        self.playlists = [(n, ids if n == name else old) for n, old in self.playlists]
        self.show_tracks(cursor=cursor)
        self.names.update_cell(name, self.names.ordered_columns[1].key, str(len(ids)))
        self.edit(lambda store: store.save_playlist(name, ids) and None, select=name)

    def action_export(self) -> None:
        name = self.current_name()
        if name is None:
            return

        def chosen(path: str | None) -> None:
            if path:
                self.export(name, Path(path).expanduser())

        self.app.push_screen(NamePrompt(f"Write playlist {name!r} as M3U to:", value=f"{name}.m3u8"), chosen)

    @work(thread=True, group="playlists-edit", exit_on_error=False)
    def export(self, name: str, dest: Path) -> None:
        from mrs_tui.playlists import export_playlist

        count = export_playlist(self.app.engine.store, name, dest)
        self.app.call_from_thread(self.app.notify, f"wrote {count} tracks to {dest}", title="Playlists")
