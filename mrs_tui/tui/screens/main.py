"""The main screen: library on the left, "next up" and the track details on the right,
indexing progress and the preview player at the bottom.

Moving the cursor never waits for the database: the details pane shows the track from the
list at once and its plays and audio tags when a worker has read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from mrs_tui.tui import messages as msg
from mrs_tui.tui.keymap import RemappableBindings
from mrs_tui.tui.widgets.details import TrackDetails
from mrs_tui.tui.widgets.footer import KeyFooter
from mrs_tui.tui.widgets.library import TrackList, TrackListHeader
from mrs_tui.tui.widgets.ranked import RankedList
from mrs_tui.tui.widgets.status import IndexStatus, JobStatus, PlayerBar
from mrs_tui.tui.widgets.suggestions import NextUp

if TYPE_CHECKING:
    from mrs_tui.engine import SuggestionList, TrackFacts
    from mrs_tui.store import Track


class MainScreen(RemappableBindings, Screen):
    # Below these sizes the panes share the width and the details pane folds away (app.tcss):
    # at 80x24 the library and the suggestions both keep a dozen rows and readable titles.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    AUTO_FOCUS = "#library"  # not the search box, even with an empty library: keys stay commands

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("p", "play", "Play"),
        Binding("s", "stop", "Stop"),
        Binding("n", "play_next", "Next"),
        Binding("l", "like", "Like"),
        Binding("d", "dislike", "Dislike"),
        Binding("f", "cold_start", "Cold start"),
        Binding("c", "cancel_jobs", "Cancel"),
        Binding("i", "index", "Index"),
        Binding("a", "analyse_selected", "Analyse track", show=False),
        Binding("A", "analyse_visible", "Analyse list", show=False),
        Binding("t", "train", "Train"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._facts: TrackFacts | None = None  # of the last track the worker read

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            with Vertical(id="library-pane"):
                yield Input(placeholder="/ search title, artist, album, genre", id="search")
                yield TrackListHeader(id="library-header")
                yield TrackList(id="library")
                yield Static("", id="library-summary")
            with Vertical(id="side-pane"):
                yield Static("", id="models")
                yield NextUp(id="nextup")
                yield TrackDetails(id="details")
        yield IndexStatus(id="index-status")
        yield JobStatus(id="train-status")
        yield PlayerBar(id="player")
        yield KeyFooter()

    # -- handles on widgets ----------------------------------------------------------------------

    @property
    def library(self) -> TrackList:
        return self.query_one(TrackList)

    @property
    def nextup(self) -> NextUp:
        return self.query_one(NextUp)

    @property
    def index_status(self) -> IndexStatus:
        return self.query_one(IndexStatus)

    @property
    def train_status(self) -> JobStatus:
        return self.query_one("#train-status", JobStatus)

    @property
    def player_bar(self) -> PlayerBar:
        return self.query_one(PlayerBar)

    @property
    def selected_track_id(self) -> int | None:
        return self.library.selected_track_id

    def focused_track(self) -> Track | None:
        """The track under the cursor of whichever table has focus (suggestions or library)."""
        table = self.nextup.table
        if self.focused is table and table.selected is not None:
            return table.selected.track
        track_id = self.library.selected_track_id
        return self.library.tracks.get(track_id) if track_id is not None else None

    # -- what the app tells us --------------------------------------------------------------------

    def show_library(self, tracks: list[Track], analysed: set[int], played: set[int], *, complete: bool = True) -> None:
        """`complete=False`: the first rows of a big library; the whole list follows."""
        first_time = not self.library.tracks
        self.library.set_tracks(tracks, analysed=analysed, played=played)
        self.query_one(TrackListHeader).show_for(self.library)
        failed = sum(t.status == "failed" for t in tracks)
        missing = sum(t.status == "missing" for t in tracks)
        parts = [f"{len(tracks)} tracks", f"{len(analysed)} analysed"]
        if failed:
            parts.append(f"{failed} unreadable")
        if missing:
            parts.append(f"{missing} missing")
        summary = (
            " · ".join(parts) if complete else f"the first {len(tracks)} tracks · reading the rest of the library…"
        )
        self.query_one("#library-summary", Static).update(summary)
        if first_time and tracks:
            self.library.focus()
            self.show_details()

    def show_models(self, backend: str, recommender: str) -> None:
        self.query_one("#models", Static).update(f"backend [b]{backend}[/b] (b) · recommender [b]{recommender}[/b] (r)")

    def show_suggestions(self, result: SuggestionList) -> None:
        self.nextup.show(result)

    def mark_played(self, track_id: int) -> None:
        self.library.played.add(track_id)
        self.library.refresh()

    def request_suggestions(self, seed: int | None = None, pool: str = "all") -> None:
        seed = seed if seed is not None else self.selected_track_id
        self.app.request_suggestions(seed, pool)

    def show_details(self) -> None:
        """The highlighted track at once; its plays and tags follow from a worker."""
        track_id = self.selected_track_id
        track = self.library.tracks.get(track_id) if track_id is not None else None
        facts = self._facts if self._facts is not None and self._facts.track_id == track_id else None
        self.query_one(TrackDetails).show(track, facts=facts)
        if track_id is not None and self.app.engine is not None:
            self.read_facts(track_id)

    @work(thread=True, exclusive=True, group="details", exit_on_error=False)
    def read_facts(self, track_id: int) -> None:
        self.post_message(msg.TrackFactsReady(self.app.engine.track_facts(track_id)))

    def on_track_facts_ready(self, message: msg.TrackFactsReady) -> None:
        self._facts = message.facts
        if message.facts.track_id == self.selected_track_id:
            self.query_one(TrackDetails).show(self.library.tracks.get(message.facts.track_id), facts=message.facts)

    def track_played(self, track_id: int) -> None:
        """A play of `track_id` was recorded: its details are out of date."""
        if track_id == self.selected_track_id:
            self.show_details()

    # -- events ------------------------------------------------------------------------------------------

    def on_track_list_highlighted(self, event: TrackList.Highlighted) -> None:
        self.show_details()
        self.request_suggestions()

    def on_track_list_selected(self, event: TrackList.Selected) -> None:
        track = self.library.tracks.get(event.track_id)
        if track is not None:
            self.app.play_track(track)

    def on_ranked_list_selected(self, event: RankedList.Selected) -> None:
        # enter on a suggestion says why it is there; p plays it (enter in the library plays).
        self.app.action_explain()

    def on_resize(self) -> None:
        self.query_one(TrackListHeader).show_for(self.library)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "search":
            self.library.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._leave_search()

    def on_mount(self) -> None:
        # Only `/` enters the search box: tab would focus it and the next single-key commands
        # would be typed into it (and empty the list).
        self.query_one("#search", Input).can_focus = False

    def _leave_search(self) -> None:
        self.library.focus()
        self.query_one("#search", Input).can_focus = False

    # -- actions -------------------------------------------------------------------------------------------

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.can_focus = True
        search.focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        self._leave_search()

    def action_play(self) -> None:
        track = self.focused_track()
        if track is not None:
            self.app.play_track(track)

    def action_stop(self) -> None:
        self.app.stop_preview()

    def action_play_next(self) -> None:
        self.app.action_play_next()  # the queue first, then the first suggestion

    def _rate(self, event: str) -> None:
        player = self.app.player
        track_id = player.track_id if player is not None and player.playing else None
        if track_id is None:
            track = self.focused_track()
            track_id = track.id if track else None
        if track_id is not None:
            self.app.rate(track_id, event)

    def action_like(self) -> None:
        self._rate("like")

    def action_dislike(self) -> None:
        self._rate("dislike")

    def action_cold_start(self) -> None:
        self.request_suggestions(pool="cold")

    def action_cancel_jobs(self) -> None:
        self.app.cancel_jobs()

    def action_train(self) -> None:
        self.app.train_now()

    def action_evaluate(self) -> None:
        self.app.open_evaluation()

    def action_index(self) -> None:
        folder = self.app.folder
        self._analyse(None if folder is not None else self.library.visible_track_ids)

    def action_analyse_selected(self) -> None:
        track_id = self.library.selected_track_id
        if track_id is not None:
            self._analyse([track_id])

    def action_analyse_visible(self) -> None:
        self._analyse(self.library.visible_track_ids)

    def _analyse(self, track_ids: list[int] | None) -> None:
        """Analyse with the current backend: these tracks only, or (None) scan and do the library."""
        if self.app.indexing:
            self.app.notify("analysis is already running (c cancels it)")
            return
        self.app.start_indexing(track_ids)
