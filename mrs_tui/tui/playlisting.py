"""Saving a list of tracks (the queue, the suggestions) as a named playlist, from any screen.

The name is asked for first; a worker then looks at what exists: a new name is written at
once, an existing one only after the user agreed to replace it (saying how many tracks it
holds now). The playlists screen (key 5) opens, edits and deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.binding import Binding
from textual.message import Message

PLAYLIST_BINDINGS = [
    Binding("5", "show_screen('playlists')", "Playlists", show=False, id="screen-playlists"),
    Binding("ctrl+s", "save_suggestions", "Save as playlist", show=False, id="save_suggestions"),
]


@dataclass
class PlaylistNameTaken(Message):
    name: str
    holds: int  # tracks in the playlist now
    track_ids: list[int]
    what: str


class PlaylistSavingMixin:
    """Needs the app's `engine`, `main`, `push_screen` and `notify`."""

    def action_save_suggestions(self) -> None:
        main = self.main
        if main is None or self.screen is not main:
            return
        items = main.nextup.table.items
        if not items:
            self.notify("no suggestions to save yet", severity="warning")
            return
        self.ask_to_save_playlist([item.track.id for item in items], "the suggestions")

    def ask_to_save_playlist(self, track_ids: list[int], what: str) -> None:
        from mrs_tui.tui.screens.queue import NamePrompt

        if self.engine is None:
            return
        if not track_ids:
            self.notify(f"{what}: nothing to save", severity="warning")
            return

        def named(name: str | None) -> None:
            if name:
                self._save_playlist(name, list(track_ids), what, replace=False)

        self.push_screen(NamePrompt(f"Save {what} ({len(track_ids)} tracks) as playlist:"), named)

    @work(thread=True, group="playlist", exit_on_error=False)
    def _save_playlist(self, name: str, track_ids: list[int], what: str, *, replace: bool) -> None:
        from mrs_tui.playlists import check_name

        name = check_name(name)
        store = self.engine.store
        existing = store.playlist(name)
        if existing is not None and not replace:
            self.post_message(PlaylistNameTaken(name, existing.tracks, track_ids, what))
            return
        store.save_playlist(name, track_ids)
        self.call_from_thread(self.notify, f"saved {len(track_ids)} tracks as playlist {name!r}", title="Playlist")

    def on_playlist_name_taken(self, message: PlaylistNameTaken) -> None:
        from mrs_tui.tui.screens.prompts import ConfirmPrompt

        def answered(yes: bool | None) -> None:
            if yes:
                self._save_playlist(message.name, message.track_ids, message.what, replace=True)
            else:
                self.notify(f"playlist {message.name!r} left as it was", title="Playlist")

        question = (
            f"A playlist named {message.name!r} exists ({message.holds} tracks).\n"
            f"Replace it with {message.what} ({len(message.track_ids)} tracks)?"
        )
        self.push_screen(ConfirmPrompt(question), answered)
