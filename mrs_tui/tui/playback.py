"""The app's transport, queue and radio: mixed into `MrsTuiApp`, kept apart from its policy code.

Keys follow terminal players: `space` pauses, `←`/`→` (or `,`/`.`) seek 5 s, `+`/`-` set the
volume, `n`/`N` go to the next/previous queue entry, `z` queues the highlighted track, `R` starts a
radio from it, `m` switches between previews and whole tracks, `1`-`5` open the main, queue,
history, jobs and playlists screens. A track that plays to its end moves the queue on by itself; with a radio
the queue refills (in a worker: the recommender and the database never run on the UI thread).
Every action is also in the command palette (ctrl+p).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from mrs_tui.queue import PlayQueue, QueueEntry

if TYPE_CHECKING:
    from mrs_tui.player import PlaybackEnded
    from mrs_tui.radio import Radio, RefillReport
    from mrs_tui.store import Play, Track

SEEK_SECONDS = 5.0
VOLUME_STEP = 0.1

PLAYBACK_BINDINGS = [  # ids: the names the config's `keys` table remaps
    Binding("space", "toggle_pause", "Pause", id="toggle_pause"),
    # priority: the lists use ←/→ for scrolling; `check_action` hands them back to a text field
    Binding("left", "arrow_seek(-5)", "−5 s", show=False, priority=True, id="seek-back-arrow"),
    Binding("right", "arrow_seek(5)", "+5 s", show=False, priority=True, id="seek-forward-arrow"),
    Binding("comma", "seek(-5)", "−5 s", show=False, id="seek-back"),
    Binding("full_stop", "seek(5)", "+5 s", show=False, id="seek-forward"),
    Binding("plus,equals_sign", "volume(0.1)", "Vol +", show=False, id="volume-up"),
    Binding("minus", "volume(-0.1)", "Vol −", show=False, id="volume-down"),
    Binding("n", "play_next", "Next", show=False),  # on every screen without an n of its own
    Binding("N", "previous", "Previous", show=False),
    Binding("m", "toggle_playback_mode", "Preview/full", show=False),
    Binding("z", "queue_highlighted", "Queue", show=False),
    Binding("R", "radio_from_highlighted", "Radio", show=False),
    Binding("o", "diversity", "Diversity", show=False),
    Binding("1", "show_screen('main')", "Main", show=False, id="screen-main"),
    Binding("2", "show_screen('queue')", "Queue", show=False, id="screen-queue"),
    Binding("3", "show_screen('history')", "History", show=False, id="screen-history"),
    Binding("4", "show_screen('jobs')", "Jobs", show=False, id="screen-jobs"),
]


@dataclass
class RadioRefilled(Message):
    report: RefillReport
    advance: bool  # the queue was empty: play the first new entry


@dataclass
class QueueRestored(Message):
    entries: list  # SavedQueueEntry, in order
    position: int
    radio: Radio | None = None  # the radio that was filling it, rebuilt from its saved seeds


class PlaybackMixin:
    """Needs the app's `engine`, `player`, `settings`, `play_track` and `main`."""

    def init_playback(self) -> None:
        self.queue = PlayQueue()
        self.radio: Radio | None = None
        self._playing_entry: QueueEntry | None = None
        self._queue_lock = threading.Lock()
        self._queue_write_lock = threading.Lock()
        self._queue_snapshot: tuple[int, list, int] | None = None  # (change number, entries, position) to save
        self._queue_changes = 0
        self._queue_saved = 0  # the change number last written

    # -- keys and the command palette ----------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # ← → seek, except while typing in a text field (they move its cursor) and on screens that
        # move between columns with them (`USES_ARROWS`, the comparison); `,` and `.` seek everywhere.
        if action == "arrow_seek":
            return not (isinstance(self.focused, Input) or getattr(self.screen, "USES_ARROWS", False))
        return True

    def action_arrow_seek(self, seconds: float) -> None:
        self.action_seek(seconds)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for title, help_text, callback in self.palette_commands():
            yield SystemCommand(title, help_text, callback)

    def palette_commands(self):
        """(title, help, callback) for every action of the app, so the palette finds them by name."""
        main = self.main
        run = self.run_action
        commands = [
            ("Play highlighted track", "p (enter in the library)", lambda: main and main.action_play()),
            ("Pause or resume", "space", self.action_toggle_pause),
            ("Stop", "s: before half way it counts as a skip", self.stop_preview),
            ("Next track", "n: next in the queue, else the first suggestion", self.action_play_next),
            ("Previous track", "N", self.action_previous),
            ("Seek forward 5 s", "→ or .", lambda: self.action_seek(SEEK_SECONDS)),
            ("Seek back 5 s", "← or ,", lambda: self.action_seek(-SEEK_SECONDS)),
            ("Volume up", "+", lambda: self.action_volume(VOLUME_STEP)),
            ("Volume down", "-", lambda: self.action_volume(-VOLUME_STEP)),
            ("Switch previews / whole tracks", "m", self.action_toggle_playback_mode),
            ("Add highlighted track to the queue", "z", self.action_queue_highlighted),
            ("Start radio from highlighted track", "R", self.action_radio_from_highlighted),
            ("Stop the radio", "the queue stays", self.stop_radio),
            ("Diversity rules", "o: caps per artist/album, window, duplicates, exploration", self.action_diversity),
            ("Show the queue", "2", lambda: self.action_show_screen("queue")),
            ("Show the history", "3", lambda: self.action_show_screen("history")),
            ("Show running jobs", "4: progress, ETA and cancel for each", lambda: self.action_show_screen("jobs")),
            ("Show the playlists", "5: open, edit, delete, export", lambda: self.action_show_screen("playlists")),
            ("Save the suggestions as a playlist", "ctrl+s on the main screen", self.action_save_suggestions),
            ("Save the queue as a playlist", "ctrl+s on the queue screen", self.save_queue_as_playlist),
            ("Show the main screen", "1", lambda: self.action_show_screen("main")),
            ("Import listening history", "Last.fm, ListenBrainz, Spotify exports", self.open_history_import),
            ("Like what is playing", "l", lambda: main and main.action_like()),
            ("Dislike what is playing", "d", lambda: main and main.action_dislike()),
            ("New files: cold-start suggestions", "f", lambda: main and main.action_new_files()),
            ("Search the library", "/", lambda: main and main.action_search()),
            ("Scan and analyse the library", "i", lambda: main and main.action_index()),
            ("Cancel analysis or training", "c", self.cancel_jobs),
            ("Choose the backend", "b", lambda: run("pick_backend")),
            ("Choose the recommender", "r", lambda: run("pick_recommender")),
            ("Compare backends", "v", lambda: run("compare")),
            ("Train the recommender", "t", self.train_now),
            ("Evaluate on my history", "e", self.open_evaluation),
            ("Help: keys", "?", lambda: run("help")),
        ]
        return commands

    # -- screens ---------------------------------------------------------------------------------

    def action_show_screen(self, name: str) -> None:
        from mrs_tui.tui.screens.history import HistoryScreen
        from mrs_tui.tui.screens.jobs import JobsScreen
        from mrs_tui.tui.screens.playlists import PlaylistsScreen
        from mrs_tui.tui.screens.queue import QueueScreen

        kinds = {"queue": QueueScreen, "history": HistoryScreen, "jobs": JobsScreen, "playlists": PlaylistsScreen}
        if name != "main" and isinstance(self.screen, kinds[name]):
            return
        while len(self.screen_stack) > 1 and self.screen is not self.main:
            self.pop_screen()
        if name in kinds and self.engine is not None:
            self.push_screen(kinds[name]())

    def open_history_import(self) -> None:
        self.action_show_screen("history")
        from mrs_tui.tui.screens.history import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            self.screen.action_import()

    # -- transport -------------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        player = self.player
        if player is None or not player.playing:
            self.notify("nothing is playing")
            return
        paused = player.toggle_pause()
        if self.main is not None:
            self.main.player_bar.set_paused(paused)

    def action_seek(self, seconds: float) -> None:
        if self.player is not None and self.player.playing:
            self.player.seek(float(seconds))
            self.update_player_position()

    def action_volume(self, delta: float) -> None:
        if self.player is None:
            return
        volume = self.player.change_volume(float(delta))
        if self.main is not None:
            self.main.player_bar.set_volume(volume)

    def action_toggle_playback_mode(self) -> None:
        self.settings.playback = "full" if self.settings.playback == "preview" else "preview"
        what = "whole tracks" if self.settings.playback == "full" else f"{self.settings.preview_seconds:g}-s previews"
        self.notify(f"playing {what} from the next track on", title="Playback")

    def action_play_next(self) -> None:
        """The next queue entry; with an empty queue, the first suggestion."""
        if self.advance_queue():
            return
        if self.radio is not None:
            self.refill_radio(advance=True)
            return
        main = self.main
        items = main.nextup.table.items if main is not None else []
        if items:
            self.play_track(items[0].track)
        else:
            self.notify("the queue is empty and there is no suggestion yet")

    def action_previous(self) -> None:
        if self.queue.previous() is None:
            self.notify("nothing before this in the queue")
            return
        self._play_entry(self.queue.current)

    def advance_queue(self) -> bool:
        entry = self.queue.advance()
        if entry is None:
            return False
        self._play_entry(entry)
        return True

    def play_queue_entry(self, index: int) -> None:
        self._play_entry(self.queue.jump(index))

    def _play_entry(self, entry: QueueEntry) -> None:
        track = self.track_info(entry.track_id)
        if track is None:
            self.notify(f"track {entry.track_id} is no longer in the library", severity="warning")
            return
        self._playing_entry = entry
        self.play_track(track, from_queue=True)
        self.queue_changed()

    def enqueue_played(self, track: Track) -> None:
        """A track played from a list joins the queue where it plays, so `previous` finds it."""
        self._playing_entry = self.queue.play_next(track.id, why="played by you")
        self.queue.advance()
        self.queue_changed()

    def playback_recorded(self, play: Play) -> None:
        """A play, skip, like or dislike is in the history: the radio learns from it too."""
        if self.radio is not None:
            self.radio.feedback(play.track_id, play.event, track=self.track_info(play.track_id))

    def playback_ended(self, ended: PlaybackEnded | None) -> None:
        """After the player stopped: move on if the track ran out by itself."""
        self._playing_entry = None
        if ended is None:
            return
        if not ended.reached_end:
            self.show_queue_screens()  # ▶ becomes ■: stopped where it stands
            return
        if self.advance_queue():
            if self.radio is not None and self.radio.needs_refill():
                self.refill_radio(advance=False)
            return
        if self.radio is not None:
            self.refill_radio(advance=True)
        else:
            self.show_queue_screens()  # the end of the queue: nothing plays on

    def track_info(self, track_id: int) -> Track | None:
        """From the library the main screen holds: no database query on the UI thread."""
        main = self.main
        return main.library.tracks.get(track_id) if main is not None else None

    # -- queue and radio --------------------------------------------------------------------------

    def highlighted_track(self) -> Track | None:
        screen = self.screen
        if hasattr(screen, "highlighted_track"):
            return screen.highlighted_track()
        return self.main.focused_track() if self.main is not None else None

    def action_queue_highlighted(self) -> None:
        track = self.highlighted_track()
        if track is not None:
            self.queue_track(track)

    def action_radio_from_highlighted(self) -> None:
        track = self.highlighted_track()
        if track is not None:
            self.start_radio([track.id])

    def start_radio(self, seeds: list[int], *, label: str | None = None, playlist: str | None = None) -> None:
        if self.engine is None:
            return
        self._start_radio(seeds, label, playlist)

    @work(thread=True, exclusive=True, group="radio", exit_on_error=False)
    def _start_radio(self, seeds: list[int], label: str | None, playlist: str | None) -> None:
        from mrs_tui.radio import Radio

        if playlist is not None:
            radio = Radio.from_playlist(self.engine, self.queue, playlist)
        else:
            radio = Radio(self.engine, self.queue, seeds, seed_label=label)
        self.radio = radio
        self.engine.store.save_radio(radio.seeds, radio.seed_label)  # it fills the queue after a restart too
        report = radio.refill(force=True, add=False)
        self.post_message(RadioRefilled(report, advance=self.player is None or not self.player.playing))

    def stop_radio(self) -> None:
        self.radio = None
        self._forget_radio()
        self.notify("radio off; the queue stays")

    @work(thread=True, exclusive=True, group="radio", exit_on_error=False)
    def _forget_radio(self) -> None:
        self.engine.store.save_radio(None)

    def refill_radio(self, *, advance: bool) -> None:
        if self.radio is not None and self.engine is not None:
            self._refill_radio(advance)

    @work(thread=True, exclusive=True, group="radio", exit_on_error=False)
    def _refill_radio(self, advance: bool) -> None:
        radio = self.radio
        if radio is None:
            return
        self.post_message(RadioRefilled(radio.refill(force=advance, add=False), advance))

    def on_radio_refilled(self, message: RadioRefilled) -> None:
        report = message.report
        self.queue.add(report.added)
        if report.note or not report.added:
            self.notify(report.text(), title="Radio", severity="warning" if not report.added else "information")
        self.queue_changed()
        if message.advance and report.added and not (self.player is not None and self.player.playing):
            self.advance_queue()

    def action_diversity(self) -> None:
        """`o`: change the diversity rules; the running radio uses them from its next refill."""
        from mrs_tui.diversity import DiversityRules
        from mrs_tui.paths import config_path
        from mrs_tui.tui.screens.diversity import DiversityScreen

        rules = self.radio.rules if self.radio is not None else DiversityRules.from_settings(self.settings)
        where = self.settings.source or config_path()

        def chosen(new: DiversityRules | None) -> None:
            if new is None or new == rules:
                return
            values = {f"diversity_{name}": value for name, value in new.as_dict().items()}
            for name, value in values.items():
                setattr(self.settings, name, value)
            if self.radio is not None:
                self.radio.set_rules(new)
            self._write_settings(where, values)

        self.push_screen(DiversityScreen(rules, str(where)), chosen)

    @work(thread=True, group="settings", exit_on_error=False)
    def _write_settings(self, path, values: dict) -> None:
        from mrs_tui.config import save_settings

        save_settings(path, values)
        radio = " the radio uses them from its next refill;" if self.radio is not None else ""
        self.call_from_thread(self.notify, f"diversity rules changed:{radio} saved to {path}", title="Diversity")

    def queue_changed(self) -> None:
        self.show_queue_screens()
        self.persist_queue()

    def on_preview_started(self, _message) -> None:
        self.show_queue_screens()  # ■ becomes ▶ once the audio is actually playing

    def show_queue_screens(self) -> None:
        from mrs_tui.tui.screens.queue import QueueScreen

        for screen in self.screen_stack:
            if isinstance(screen, QueueScreen):
                screen.show_queue()

    # -- the queue across restarts ----------------------------------------------------------------

    def persist_queue(self) -> None:
        """Save the queue as it is now, in a worker; the latest change wins whatever order they run in."""
        from mrs_tui.store import SavedQueueEntry

        if self.engine is None:
            return
        entries = [SavedQueueEntry(e.track_id, e.why, e.rule, e.source, e.score) for e in self.queue.entries]
        with self._queue_lock:
            self._queue_changes += 1
            self._queue_snapshot = (self._queue_changes, entries, self.queue.position)
        self._save_queue()

    @work(thread=True, group="queue-save", exit_on_error=False)
    def _save_queue(self) -> None:
        self.write_queue_snapshot()

    def write_queue_snapshot(self) -> None:
        with self._queue_write_lock:  # one writer at a time: an older snapshot never lands after a newer one
            with self._queue_lock:  # the UI thread only ever waits for this swap, never for the disk
                snapshot = self._queue_snapshot
            if snapshot is None or snapshot[0] <= self._queue_saved:
                return
            change, entries, position = snapshot
            self.engine.store.save_queue(entries, position)
            self._queue_saved = change

    def on_engine_ready(self, _message) -> None:
        self._restore_queue()

    @work(thread=True, exclusive=True, group="queue-restore", exit_on_error=False)
    def _restore_queue(self) -> None:
        from mrs_tui.errors import UserError
        from mrs_tui.radio import Radio

        store = self.engine.store
        entries, position = store.saved_queue()
        radio = None
        if (saved := store.saved_radio()) is not None:
            try:
                radio = Radio(self.engine, self.queue, saved[0], seed_label=saved[1] or None)
            except UserError:
                radio = None
        if entries or radio is not None:
            self.post_message(QueueRestored(entries, position, radio))

    def on_queue_restored(self, message: QueueRestored) -> None:
        if self.queue.entries or self.radio is not None:  # the user started a new one meanwhile: theirs stays
            return
        if message.radio is not None:
            self.radio = message.radio  # it refills the queue when it runs low, as before the restart
            self.notify(f"the radio from {message.radio.seed_label} is back (it fills the queue as it plays)")
        if not message.entries:
            return
        self.queue.entries = [
            QueueEntry(e.track_id, why=e.why, rule=e.rule, source=e.source, score=e.score) for e in message.entries
        ]
        self.queue.position = message.position
        for screen in self.screen_stack:
            if hasattr(screen, "show_queue"):
                screen.show_queue()
        upcoming = len(self.queue.upcoming)
        self.notify(f"the queue from last time is back: {upcoming} up next (n plays on, 2 shows it)", title="Queue")

    def on_unmount(self) -> None:
        # A change made just before quitting may still be waiting for its worker, which the
        # shutdown cancels: write it here (the snapshot is already taken, this is one short write).
        if self.engine is not None:
            self.write_queue_snapshot()

    # -- playlists -------------------------------------------------------------------------------

    def save_queue_as_playlist(self) -> None:
        self.ask_to_save_playlist(self.queue.track_ids(), "the queue")
