"""The Textual app: a thin layer over `Engine`.

Startup order matters: the first screen paints from this module's imports alone (Textual,
the store and engine modules — no torch, librosa or faiss); the database opens in a worker
right after, then scanning and analysis run in another worker that reports progress a few
times a second and stops when cancelled. Workers never touch widgets: they post messages.
No database query runs on the UI thread: reads and writes go through workers, and screens
show what the workers sent.

Cancelling is Textual's own: `Worker.cancel()` sets the worker's `cancelled_event`, which is
the event the core's long jobs poll. A cancelled thread worker runs on until the job sees it,
so `_live_jobs` counts the job threads still alive: `indexing` and `training` stay true until
the thread has stopped, and `c` or a key that starts the same job says it is still running.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState, get_current_worker

from mrs_tui.config import Settings
from mrs_tui.errors import AudioDecodeError, UserError
from mrs_tui.progress import Throttle
from mrs_tui.tui import messages as msg
from mrs_tui.tui.collector import IdleCollectionMixin
from mrs_tui.tui.jobs import JobsMixin
from mrs_tui.tui.keymap import RemappableBindings, UiSettingsMixin
from mrs_tui.tui.playback import PLAYBACK_BINDINGS, PlaybackMixin
from mrs_tui.tui.playlisting import PLAYLIST_BINDINGS, PlaylistSavingMixin
from mrs_tui.tui.screens.main import MainScreen
from mrs_tui.tui.watching import WatchMixin

if TYPE_CHECKING:
    from mrs_tui.engine import BackendRow, Engine
    from mrs_tui.player import PlaybackEnded, Player
    from mrs_tui.store import Track

# A big library shows this many rows first (one index seek), then reads the whole list.
FIRST_PAGE_ROWS = 500
# Seconds without input before the other backends are loaded for the compare screen (the
# loading competes with the keys for the interpreter), and the largest library for which they
# are (each costs its vectors in memory).
WARM_COMPARISON_WHEN_IDLE = 1.0
WARM_COMPARISON_AT_MOST = 200_000
JOBS = {  # worker group -> (title, what the user is told when it is cancelled)
    "index": ("Indexing", "stopping analysis; what is done is kept and resumes next time"),
    "train": ("Training", "stopping training; the previous model keeps serving"),
}


def updates_main_screen(handler):
    """For handlers of worker messages: a message that arrives while the app is tearing the main
    screen down (its widgets already gone) has nothing left to update."""

    @functools.wraps(handler)
    def guarded(self, *args, **kwargs):
        try:
            return handler(self, *args, **kwargs)
        except NoMatches:
            if self.is_running and self.main is not None and self.main.is_attached and self.main.children:
                raise
            return None

    return guarded


class MrsTuiApp(
    IdleCollectionMixin,
    RemappableBindings,
    JobsMixin,
    PlaybackMixin,
    PlaylistSavingMixin,
    UiSettingsMixin,
    WatchMixin,
    App,
):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses may live elsewhere
    TITLE = "mrs-tui"
    SUB_TITLE = "next-track suggestions from your own music"

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("b", "pick_backend", "Backend"),
        Binding("r", "pick_recommender", "Recommender"),
        Binding("v", "compare", "Compare backends"),
        *PLAYBACK_BINDINGS,
        *PLAYLIST_BINDINGS,
        Binding("w", "explain", "Why this track"),
        Binding("u", "use_winners", "Use the winner", show=False),
    ]

    def __init__(
        self,
        *,
        db_path: Path,
        folder: Path | None = None,
        settings: Settings | None = None,
        player: Player | None = None,
        index_on_start: bool = True,
        folders: list[Path] | None = None,
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        # Every library folder scanned and watched; `folder` is the first (None: no folder).
        self.folders = list(
            dict.fromkeys(Path(f).expanduser().resolve() for f in ([folder] if folder else folders or []))
        )
        self.folder = self.folders[0] if self.folders else None
        self.settings = settings or Settings()
        self.player = player  # created with the engine, after the first paint, when not given
        if player is not None:
            player.on_ended = self._on_player_ended
        self.index_on_start = index_on_start
        self.engine: Engine | None = None
        self._live_jobs: Counter[str] = Counter()  # job threads alive per worker group, cancelled or not
        self.started_at = time.perf_counter()
        self.previews_reason: str | None = None
        self._suggest_request = 0
        self._comparing = None  # the seed whose comparison is being computed before its screen opens
        self.init_playback()
        self.init_jobs()

    def on_mount(self) -> None:
        self.apply_ui_settings()
        self.push_screen(MainScreen())
        # Paint first, then open the database: the first frame never waits for disk.
        self.call_after_refresh(self.open_engine)
        self.set_interval(0.25, self.update_player_position)
        self.start_job_clock()
        self.start_idle_collection()

    def notify(self, message: str, *, title: str = "", severity="information", timeout=None, markup=True) -> None:
        # Notifications carry track titles, file and playlist names, never markup: "Song [Live]"
        # keeps its brackets, and a title holding "[/]" cannot stop the app.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    @property
    def main(self) -> MainScreen | None:
        """The main screen, or None while the app is starting or shutting down (late messages)."""
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    # -- opening the database -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def open_engine(self) -> None:
        from mrs_tui.engine import Engine
        from mrs_tui.store import Store

        if self.player is None:
            from mrs_tui.player import Player

            self.player = Player(on_ended=self._on_player_ended)
        store = Store.open(self.db_path)
        self.engine = Engine(store, self.settings)
        first = store.track_page(limit=FIRST_PAGE_ROWS)
        if len(first) < FIRST_PAGE_ROWS:
            tracks, analysed, played = self._read_library()
            self.post_message(msg.EngineReady(tracks, played, analysed, serving=self._serving_line()))
            return
        # A big library: the first screenful at once (an index seek), then the whole list.
        ids = [t.id for t in first]
        engine = self.engine
        analysed = store.embedded_track_ids(engine.backend, engine.version(), include_failed=False, among=ids)
        self.post_message(
            msg.EngineReady(first, store.played_among(ids), analysed, serving=self._serving_line(), complete=False)
        )
        self.post_message(msg.LibraryLoaded(*self._read_library()))

    def _serving_line(self) -> str:
        """(In a worker) the header's line naming the winners that serve each mode."""
        from mrs_tui.comparison import describe_serving

        return describe_serving(self.engine.store, self.engine.served_pairs())

    def show_serving(self, line: str) -> None:
        self.sub_title = line or self.SUB_TITLE

    @updates_main_screen
    def on_engine_ready(self, message: msg.EngineReady) -> None:
        main = self.main
        if main is None:
            return
        self.log(f"started in {(time.perf_counter() - self.started_at) * 1000:.0f} ms")
        main.show_library(message.tracks, message.analysed, message.played, complete=message.complete)
        main.show_models(self.engine.backend, self.engine.recommender)
        self.show_serving(message.serving)
        if self.folder is not None and self.index_on_start:
            self.start_indexing()
        self.start_watching()
        if message.complete:
            self._warm_comparison_soon(len(message.tracks))

    @work(thread=True, exclusive=True, group="warm", exit_on_error=False)
    def warm_comparison(self) -> None:
        """The other analysed backends' vectors and models, loaded while the user browses: the
        first `v` then waits for the comparison alone (cold, it read every backend's vectors and
        history first: a second at 10k tracks)."""
        engine = self.engine
        engine.prepare([name for name in engine.indexed_backends() if name != engine.backend])

    def _read_library(self) -> tuple[list[Track], set[int], set[int]]:
        """Tracks, those analysed with the current backend, and those played (in a worker)."""
        engine = self.engine
        store = engine.store
        analysed = store.embedded_track_ids(engine.backend, engine.version(), include_failed=False)
        return store.tracks(), analysed, store.played_track_ids()

    @contextmanager
    def _job(self, group: str):
        self._live_jobs[group] += 1
        try:
            yield get_current_worker().cancelled_event
        finally:
            self._live_jobs[group] -= 1

    # -- scanning and analysis ------------------------------------------------------------------

    def start_indexing(self, track_ids: list[int] | None = None) -> None:
        if self.engine is None:
            return
        self.index_library(track_ids)

    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def index_library(self, track_ids: list[int] | None = None) -> None:
        with self._job("index") as cancel:
            engine = self.engine
            post = Throttle().wrap(self.post_message)
            if self.folder is not None and track_ids is None:
                self.scan_started_at = time.time()  # the watch catches up on what changed from here
                track_ids = []
                for folder in self.folders:
                    report = engine.scan(
                        folder, progress=lambda d, t, _p: post(msg.ScanProgressed(d, t)), cancel=cancel
                    )
                    # The list first, then the news: whoever handles ScanFinished sees the new tracks.
                    self.post_message(msg.LibraryLoaded(*self._read_library()))
                    self.post_message(msg.ScanFinished(report))
                    if report.cancelled or cancel.is_set():
                        return
                    track_ids += [t.id for t in engine.store.tracks(under=str(folder))]
            backend = engine.backend
            result = engine.index(
                [backend], track_ids=track_ids, progress=lambda p: post(msg.IndexProgressed(backend, p)), cancel=cancel
            )
            self.post_message(msg.LibraryLoaded(*self._read_library()))
            self.post_message(msg.IndexFinished(result))

    @updates_main_screen
    def on_scan_progressed(self, message: msg.ScanProgressed) -> None:
        main = self.main
        if main is None:
            return
        main.index_status.scanning(message.done, message.total)

    @updates_main_screen
    def on_index_progressed(self, message: msg.IndexProgressed) -> None:
        main = self.main
        if main is None:
            return
        main.index_status.analysing(message.backend, message.progress)

    @updates_main_screen
    def on_index_finished(self, message: msg.IndexFinished) -> None:
        main = self.main
        if main is None:
            return
        main.index_status.finished(message.report.summary())
        main.request_suggestions()

    def refresh_library(self) -> None:
        if self.engine is not None:
            self.load_library()

    @work(thread=True, exclusive=True, group="library", exit_on_error=False)
    def load_library(self) -> None:
        self.post_message(msg.LibraryLoaded(*self._read_library()))

    @updates_main_screen
    def on_library_loaded(self, message: msg.LibraryLoaded) -> None:
        main = self.main
        if main is not None:
            main.show_library(message.tracks, message.analysed, message.played)
            self._warm_comparison_soon(len(message.tracks))

    def _warm_comparison_soon(self, tracks: int) -> None:
        if tracks > WARM_COMPARISON_AT_MOST:
            return

        def when_idle() -> None:
            if self.idle_for() >= WARM_COMPARISON_WHEN_IDLE:
                waiting.stop()
                self.warm_comparison()

        waiting = self.set_interval(WARM_COMPARISON_WHEN_IDLE / 2, when_idle)

    def cancel_jobs(self) -> None:
        """Cancel analysis and training; what analysis stored is kept, training saves nothing."""
        for group, (title, note) in JOBS.items():
            live = [w for w in self.workers if w.group == group and not w.is_finished]
            for worker in live:
                worker.cancel()
            if live:
                self.notify(note, title=title)

    def _busy(self, group: str) -> bool:
        """A job of `group` is waiting to start, running, or cancelled but not stopped yet."""
        return self._live_jobs[group] > 0 or any(
            w.group == group and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers
        )

    @property
    def indexing(self) -> bool:
        return self._busy("index")

    @property
    def training(self) -> bool:
        return self._busy("train")

    # -- training --------------------------------------------------------------------------------

    def train_now(self) -> None:
        """`t`: train the current recommender on the whole history, in the background."""
        import recommenders

        engine = self.engine
        if engine is None:
            return
        if not recommenders.get_spec(engine.recommender).trainable:
            self.notify(
                f"{engine.recommender} learns nothing in advance; pick a learning recommender with r",
                title="Training",
            )
            return
        if self.training:
            self.notify("a model is already training (c cancels it)", title="Training")
            return
        self.train_models([engine.recommender], engine.backend)

    def maybe_retrain(self) -> None:
        """After new plays: retrain, in the background, the models the engine says are due."""
        engine = self.engine
        if engine is None or self.training:
            return
        self.train_models(None, engine.backend)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def train_models(self, names: list[str] | None, backend: str) -> None:
        """Train `names` one after the other (None: the models due for retraining)."""
        with self._job("train") as cancel:
            engine = self.engine
            names = engine.due_models(backend) if names is None else names
            throttle = Throttle()

            def progress(name: str, done: float, total: float, text: str) -> None:
                if throttle.ready(final=done == 0 or bool(total and done >= total)):  # first and last always show
                    self.post_message(msg.TrainProgressed(name, done, total, text))

            for outcome in engine.train_models(names, backend, progress=progress, cancel=cancel):
                if outcome.trained:  # the bar ends full, whatever the throttle let through
                    self.post_message(msg.TrainProgressed(outcome.recommender, 1, 1, "done"))
                self.post_message(msg.TrainFinished(outcome.recommender, backend, outcome.describe(), outcome.trained))

    @updates_main_screen
    def on_train_progressed(self, message: msg.TrainProgressed) -> None:
        main = self.main
        if main is None:
            return
        main.train_status.show(
            f"training {message.recommender}: {message.text} · c cancels", message.done, message.total or None
        )

    @updates_main_screen
    def on_train_finished(self, message: msg.TrainFinished) -> None:
        main = self.main
        if main is None:
            return
        # The worker is still finishing when this arrives: hide the (full) bar once it is idle.
        self.set_timer(0.5, self._hide_idle_train_status)
        self.notify(message.summary, title="Training", severity="information" if message.trained else "warning")
        if message.trained and message.recommender == (self.engine.recommender if self.engine else None):
            main.request_suggestions()

    def _hide_idle_train_status(self) -> None:
        if self.main is not None and not self.training:
            self.main.train_status.hide()

    # -- suggestions --------------------------------------------------------------------------------

    def request_suggestions(self, seed: int | None, pool: str = "all") -> None:
        if self.engine is None:
            return
        self._suggest_request += 1
        self.compute_suggestions(seed, pool, self._suggest_request)

    @work(thread=True, exclusive=True, group="suggest", exit_on_error=False)
    def compute_suggestions(self, seed: int | None, pool: str, request: int) -> None:
        result = self.engine.suggest(seed, pool=pool)
        if result.fallback_from is not None:
            result.note += " (t trains it)"
        self.post_message(msg.SuggestionsReady(result, request))

    @updates_main_screen
    def on_suggestions_ready(self, message: msg.SuggestionsReady) -> None:
        main = self.main
        if main is None:
            return
        if message.request == self._suggest_request:
            main.show_suggestions(message.result)

    def _on_player_ended(self, ended: PlaybackEnded) -> None:
        self.post_message(msg.PreviewEnded(ended))

    # -- previews ---------------------------------------------------------------------------------------

    def play_track(self, track: Track, *, from_queue: bool = False) -> None:
        if self.player is None or self.engine is None:
            return
        if not from_queue:
            self.enqueue_played(track)
        if self.previews_reason is None:
            self.previews_reason = self.player.check()
            if self.previews_reason is not None:
                self.notify(self.previews_reason, title="Previews", severity="warning", timeout=10)
        if self.previews_reason is not None:
            return
        self.load_and_play(track)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_and_play(self, track: Track) -> None:
        from mrs_tui.player import PlaybackUnavailable, load_playback

        settings = self.settings
        try:
            audio = load_playback(
                track.path, track.duration, settings.playback, settings.preview_seconds, settings.clip_position
            )
        except AudioDecodeError as exc:
            self.post_message(msg.Notice(f"cannot play {track.display_title}: {exc}", "warning"))
            return
        try:
            self.player.play(audio.samples, audio.sample_rate, track_id=track.id)
        except PlaybackUnavailable as exc:
            self.previews_reason = str(exc)
            self.post_message(msg.Notice(str(exc), "warning"))
            return
        self.engine.preview_started(track.id)
        self.post_message(msg.PreviewStarted(track))

    @updates_main_screen
    def on_preview_started(self, message: msg.PreviewStarted) -> None:
        main = self.main
        if main is None:
            return
        main.player_bar.playing(f"{message.track.display_title} — {message.track.artist or '?'}")
        main.mark_played(message.track.id)
        main.track_played(message.track.id)
        main.request_suggestions(message.track.id)

    def on_preview_ended(self, message: msg.PreviewEnded) -> None:
        ended = message.ended
        if ended is not None and ended.track_id is not None and self.engine is not None:
            self.record_play(
                functools.partial(
                    self.engine.preview_ended, ended.track_id, ended.position, ended.length, finished=ended.finished
                )
            )
        self.playback_ended(ended)

    @work(thread=True, group="history", exit_on_error=False)
    def record_play(self, write) -> None:
        """Write one history event (`write()` returns the Play) and tell the UI."""
        self.post_message(msg.PlayRecorded(write()))

    @updates_main_screen
    def on_play_recorded(self, message: msg.PlayRecorded) -> None:
        main = self.main
        if main is None:
            return
        play = message.play
        self.playback_recorded(play)
        title = self.track_title(play.track_id)
        if play.event in ("like", "dislike"):
            self.notify(f"{'liked' if play.event == 'like' else 'disliked'}: {title}")
            if play.event == "like":
                main.mark_played(play.track_id)
        else:
            main.player_bar.stopped(f"■ {play.event}: {title}")
        main.track_played(play.track_id)
        main.request_suggestions()
        self.maybe_retrain()

    def record_preview_end(self, ended: PlaybackEnded | None):
        if ended is None or ended.track_id is None or self.engine is None:
            return None
        return self.engine.preview_ended(ended.track_id, ended.position, ended.length, finished=ended.finished)

    def stop_preview(self) -> None:
        if self.player is not None:
            self.player.stop()

    @updates_main_screen
    def update_player_position(self) -> None:
        main = self.main
        if main is None:
            return
        if self.player is not None and self.player.playing:
            main.player_bar.position(self.player.position, self.player.length)

    def track_title(self, track_id: int) -> str:
        """The title the library list shows (no database trip: the list holds every track)."""
        main = self.main
        track = main.library.tracks.get(track_id) if main is not None and main.is_mounted else None
        return track.display_title if track else str(track_id)

    def rate(self, track_id: int, event: str) -> None:
        if self.engine is not None:
            self.record_play(functools.partial(self.engine.record, track_id, event))

    def on_notice(self, message: msg.Notice) -> None:
        self.notify(message.text, severity=message.severity, timeout=8)

    # -- models ------------------------------------------------------------------------------------------

    def action_pick_backend(self) -> None:
        if self.main is not None and self.engine is not None:
            self.read_backend_rows()

    @work(thread=True, exclusive=True, group="pickers", exit_on_error=False)
    def read_backend_rows(self) -> None:
        self.post_message(msg.BackendRowsReady(self.engine.backend_rows()))

    @updates_main_screen
    def on_backend_rows_ready(self, message: msg.BackendRowsReady) -> None:
        from mrs_tui.tui.screens.pickers import BackendPicker

        main = self.main
        if main is None or self.engine is None:
            return
        rows = {row.name: row for row in message.rows}

        def chosen(name: str | None) -> None:
            if not name or name == self.engine.backend:
                return
            from backends import WEIGHTS_MISSING

            if rows[name].state == WEIGHTS_MISSING:
                self.ask_to_fetch(rows[name])
                return
            self.use_backend(rows[name])

        self.push_screen(BackendPicker(message.rows, self.engine.backend), chosen)

    def use_backend(self, row: BackendRow) -> None:
        main = self.main
        if main is None or self.engine is None:
            return
        self.engine.backend = row.name
        main.show_models(self.engine.backend, self.engine.recommender)
        self.refresh_library()
        main.request_suggestions()
        if row.slow:
            self.notify(self.slow_note(row), title="Analysis", timeout=12)
        else:
            self.start_indexing(main.library.visible_track_ids if self.folder is None else None)

    def ask_to_fetch(self, row: BackendRow) -> None:
        """Weights are a download: nothing is fetched until the user says yes."""
        from mrs_tui.tui.screens.prompts import ConfirmPrompt

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(f"downloading the {row.name} weights…", title="Weights")
                self.fetch_weights(row)
            else:
                self.notify(f"{row.name} not chosen: its weights are not installed ({row.detail})", title="Weights")

        question = (
            f"The {row.display_name} weights are not installed ({row.weights_license}).\n"
            f"Download them now from {row.source} and analyse the library with {row.name}?"
        )
        self.push_screen(ConfirmPrompt(question), answered)

    @work(thread=True, exclusive=True, group="weights", exit_on_error=False)
    def fetch_weights(self, row: BackendRow) -> None:
        from backends import fetch_weights

        try:
            fetch_weights(row.name)
        except UserError as exc:
            self.post_message(msg.WeightsFetched(row.name, str(exc)))
            return
        rows = {r.name: r for r in self.engine.backend_rows()}
        self.post_message(msg.WeightsFetched(row.name, row=rows.get(row.name)))

    @updates_main_screen
    def on_weights_fetched(self, message: msg.WeightsFetched) -> None:
        if message.error is not None:
            self.notify(f"{message.backend}: {message.error}", title="Weights", severity="error", timeout=15)
            return
        self.notify(f"{message.backend} weights installed", title="Weights")
        if message.row is not None:
            self.use_backend(message.row)

    @staticmethod
    def slow_note(row: BackendRow) -> str:
        """Seconds per track: the user chooses what to spend them on."""
        speed = f"about {row.seconds_per_track:.0f} s" if row.seconds_per_track is not None else "an unknown time"
        return (
            f"{row.name} takes {speed} per track here: "
            "a analyses the highlighted track, A the visible list, i the whole library"
        )

    def action_pick_recommender(self) -> None:
        if self.main is not None and self.engine is not None:
            self.read_models_info(self.engine.backend)

    @work(thread=True, exclusive=True, group="pickers", exit_on_error=False)
    def read_models_info(self, backend: str) -> None:
        self.post_message(msg.ModelsInfoReady(self.engine.models_info(backend)))

    @updates_main_screen
    def on_models_info_ready(self, message: msg.ModelsInfoReady) -> None:
        from mrs_tui.tui.screens.pickers import RecommenderPicker

        main = self.main
        if main is None or self.engine is None:
            return

        def chosen(name: str | None) -> None:
            if name and name != self.engine.recommender:
                self.engine.recommender = name
                main.show_models(self.engine.backend, self.engine.recommender)
                main.request_suggestions()

        self.push_screen(RecommenderPicker(message.infos, self.engine.recommender), chosen)

    def action_compare(self) -> None:
        main = self.main
        if main is None or self.engine is None:
            return
        from mrs_tui.comparison import ComparisonSeed

        track = self.track_info(main.selected_track_id) if main.selected_track_id is not None else None
        title = track.display_title if track is not None else None
        # Computed before the screen opens, so that it paints once, filled; a slow first one
        # (a learned model loading) says so.
        seed = ComparisonSeed(track=main.selected_track_id, title=title)
        self._comparing = seed
        self.prepare_comparison(seed, main.nextup.result)
        self.set_timer(0.5, lambda: self._comparing is seed and self.notify("comparing…", timeout=3))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def prepare_comparison(self, seed, known) -> None:
        from mrs_tui.tui.screens.compare import ComparisonPrepared, prepare_comparison

        recommender = self.engine.recommender
        self.post_message(
            ComparisonPrepared(seed, prepare_comparison(self.engine, seed, recommenders=[recommender], known=known))
        )

    def on_comparison_prepared(self, message) -> None:
        from mrs_tui.tui.screens.compare import CompareScreen

        if message.seed is not self._comparing:
            return
        self._comparing = None
        if self.screen is self.main:  # the user may have moved on while it was computed
            self.push_screen(CompareScreen(self.engine, message.seed, ready=message.ready))

    def compare_session(self) -> None:
        from mrs_tui.comparison import ComparisonSeed
        from mrs_tui.tui.screens.compare import CompareScreen

        if self.engine is not None:
            self.push_screen(CompareScreen(self.engine, ComparisonSeed()))

    def action_explain(self) -> None:
        """`w` on the main screen: why the highlighted suggestion is there."""
        main = self.main
        if main is None or self.engine is None or self.screen is not main:
            return
        item = main.nextup.table.selected
        if item is None:
            self.notify("highlight a suggestion first", severity="warning")
            return
        from mrs_tui.tui.screens.explain import ExplainScreen

        self.push_screen(ExplainScreen(self.engine, item.track.id, seed=main.selected_track_id))

    def queue_track(self, track: Track, *, why: str = "added by you") -> None:
        """The one place lists other than the main screen's hand a track to the play queue."""
        self.queue.add([track.id], why=why)
        self.notify(f"queued: {track.display_title} ({len(self.queue.upcoming)} up next)")
        self.queue_changed()

    def train_pair(self, recommender: str, backend: str) -> None:
        """Train one (recommender, backend) pair in the background (the compare screen's t)."""
        import recommenders

        if not recommenders.get_spec(recommender).trainable:
            self.notify(f"{recommender} learns nothing in advance: nothing to train", severity="warning")
            return
        if self.training:
            self.notify("a model is already training (c cancels it)", title="Training")
            return
        self.train_models([recommender], backend)

    def action_use_winners(self) -> None:
        if self.engine is not None:
            self.use_winners()

    @work(thread=True, exclusive=True, group="winner", exit_on_error=False)
    def use_winners(self, run_id: int | None = None) -> None:
        from mrs_tui.comparison import describe_winners, latest_history_run, winners

        served = self.engine.use_winners(run_id)
        run = latest_history_run(self.engine.store, next(iter(served.values())).run_id)
        self.post_message(
            msg.Notice(f"now serving the winners of evaluation #{run.id}: {describe_winners(winners(run))}")
        )
        self.call_from_thread(self.show_serving, self._serving_line())
        untrained: dict[str, list[str]] = {}
        for recommender, backend in self.engine.untrained_winners():
            untrained.setdefault(backend, []).append(recommender)
        if untrained:  # one training job at a time: the first backend's now, the rest with t in v
            backend, names = next(iter(untrained.items()))
            self.call_from_thread(self.train_models, names, backend)
        self.call_from_thread(self._refresh_suggestions)

    def _refresh_suggestions(self) -> None:
        if self.main is not None:
            self.main.request_suggestions()

    def get_system_commands(self, screen):
        from textual.app import SystemCommand

        yield from super().get_system_commands(screen)
        if self.engine is None:
            return
        yield SystemCommand("Compare backends", "side by side on the highlighted track (v)", self.action_compare)
        yield SystemCommand(
            "Compare on this session", "backends side by side on the current session", self.compare_session
        )
        yield SystemCommand("Evaluate", "measure backends × recommenders on your history (e)", self.open_evaluation)
        yield SystemCommand(
            "Use the winner", "serve each mode with the best pair of the latest evaluation (u)", self.action_use_winners
        )

    def action_help(self) -> None:
        from mrs_tui.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    # -- errors and shutdown ----------------------------------------------------------------------------

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, UserError):
            self.notify(str(error), title="Cannot do that", severity="warning", timeout=10)
        else:
            self.notify(
                f"{type(error).__name__}: {error}", title=f"{event.worker.group} failed", severity="error", timeout=15
            )

    def open_evaluation(self) -> None:
        from mrs_tui.tui.screens.evaluate import EvaluateScreen

        if self.engine is not None:
            self.push_screen(EvaluateScreen(self.engine))

    async def action_quit(self) -> None:
        self.stop_watching()
        for group in JOBS:
            self.workers.cancel_group(self, group)
        # Record the preview that is cut short here, the one write on the UI thread: a worker
        # started now would be cancelled with the app before it ran.
        if self.player is not None:
            self.player.on_ended = None
            self.record_preview_end(self.player.stop())
        self.exit()


def create_app(
    *,
    db_path: Path,
    folder: Path | None = None,
    settings: Settings | None = None,
    player: Player | None = None,
    index_on_start: bool = True,
    folders: list[Path] | None = None,
) -> MrsTuiApp:
    """The one place the app is built: the CLI, the tests and the benchmarks all call this.

    `folder` opens one library folder; without it, `folders` (the config's `library_folders`).
    """
    return MrsTuiApp(
        db_path=db_path,
        folder=folder,
        settings=settings,
        player=player,
        index_on_start=index_on_start,
        folders=folders,
    )
