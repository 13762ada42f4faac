"""The Textual app: a thin layer over `Engine`.

Startup order matters: the first screen paints from this module's imports alone (Textual,
the store and engine modules — no torch, librosa or faiss); the database opens in a worker
right after, then scanning and analysis run in another worker that reports progress a few
times a second and stops when cancelled. Workers never touch widgets: they post messages.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState, get_current_worker

from mrs_tui.config import Settings
from mrs_tui.errors import AudioDecodeError, UserError
from mrs_tui.tui import messages as msg
from mrs_tui.tui.screens.main import MainScreen

if TYPE_CHECKING:
    from mrs_tui.engine import Engine
    from mrs_tui.player import PlaybackEnded, Player
    from mrs_tui.store import Track

PROGRESS_INTERVAL = 0.2  # seconds between progress messages from workers


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


class MrsTuiApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses may live elsewhere
    TITLE = "mrs-tui"
    SUB_TITLE = "next-track suggestions from your own music"

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("b", "pick_backend", "Backend"),
        Binding("r", "pick_recommender", "Recommender"),
        Binding("v", "compare", "Compare backends"),
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
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.folder = Path(folder).resolve() if folder else None
        self.settings = settings or Settings()
        self.player = player  # created with the engine, after the first paint, when not given
        if player is not None:
            player.on_ended = self._on_player_ended
        self.index_on_start = index_on_start
        self.engine: Engine | None = None
        self.cancel_indexing = threading.Event()
        self.cancel_training = threading.Event()
        self.started_at = time.perf_counter()
        self.previews_reason: str | None = None
        self._suggest_request = 0

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        # Paint first, then open the database: the first frame never waits for disk.
        self.call_after_refresh(self.open_engine)
        self.set_interval(0.25, self.update_player_position)

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
        self.post_message(msg.EngineReady(store.tracks(), store.played_track_ids()))

    @updates_main_screen
    def on_engine_ready(self, message: msg.EngineReady) -> None:
        main = self.main
        if main is None:
            return
        self.log(f"started in {(time.perf_counter() - self.started_at) * 1000:.0f} ms")
        main.show_library(message.tracks, self.analysed_ids(), message.played)
        main.show_models(self.engine.backend, self.engine.recommender)
        if self.folder is not None and self.index_on_start:
            self.start_indexing()

    def analysed_ids(self) -> set[int]:
        engine = self.engine
        if engine is None:
            return set()
        return engine.store.embedded_track_ids(engine.backend, engine.version(), include_failed=False)

    # -- scanning and analysis ------------------------------------------------------------------

    def start_indexing(self, track_ids: list[int] | None = None) -> None:
        if self.engine is None:
            return
        self.cancel_indexing = threading.Event()
        self.index_library(track_ids)

    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def index_library(self, track_ids: list[int] | None = None) -> None:
        engine = self.engine
        cancel = self.cancel_indexing
        worker = get_current_worker()
        last = [0.0]

        def throttled(message) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                self.post_message(message)

        if self.folder is not None and track_ids is None:
            report = engine.scan(
                self.folder, progress=lambda d, t, _p: throttled(msg.ScanProgressed(d, t)), cancel=cancel
            )
            self.post_message(msg.ScanFinished(report))
            if report.cancelled or worker.is_cancelled:
                return
            track_ids = [t.id for t in engine.store.tracks(under=str(self.folder))]
        backend = engine.backend
        result = engine.index(
            [backend],
            track_ids=track_ids,
            progress=lambda p: throttled(msg.IndexProgressed(backend, p)),
            cancel=cancel,
        )
        self.post_message(msg.IndexFinished(result))

    @updates_main_screen
    def on_scan_progressed(self, message: msg.ScanProgressed) -> None:
        main = self.main
        if main is None:
            return
        main.index_status.scanning(message.done, message.total)

    def on_scan_finished(self, message: msg.ScanFinished) -> None:
        self.refresh_library()

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
        self.refresh_library()
        main.request_suggestions()

    @updates_main_screen
    def refresh_library(self) -> None:
        main = self.main
        if main is None:
            return
        if self.engine is None:
            return
        store = self.engine.store
        main.show_library(store.tracks(), self.analysed_ids(), store.played_track_ids())

    def cancel_jobs(self) -> None:
        """Cancel analysis and training; what analysis stored is kept, training saves nothing."""
        if self.indexing and not self.cancel_indexing.is_set():
            self.cancel_indexing.set()
            self.notify("stopping analysis; what is done is kept and resumes next time", title="Indexing")
        if self.training and not self.cancel_training.is_set():
            self.cancel_training.set()
            self.notify("stopping training; the previous model keeps serving", title="Training")

    def _busy(self, group: str) -> bool:
        return any(w.group == group and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers)

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
        self.cancel_training = threading.Event()
        self.train_models([engine.recommender], engine.backend)

    def maybe_retrain(self) -> None:
        """After new plays: retrain, in the background, models that have enough new history."""
        engine = self.engine
        if engine is None or self.training:
            return
        self.cancel_training = threading.Event()
        self.retrain_due_models(engine.backend)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def retrain_due_models(self, backend: str) -> None:
        engine = self.engine
        current = engine.recommender
        # The selected recommender, and any other that was trained before: never surprise-train all.
        due = [r for r in engine.due_models(backend) if r == current or engine.model_info(r, backend).trained_at]
        if due:
            self._train(due, backend)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def train_models(self, names: list[str], backend: str) -> None:
        self._train(names, backend)

    def _train(self, names: list[str], backend: str) -> None:
        from recommenders import Cancelled

        engine = self.engine
        cancel = self.cancel_training
        last = [0.0]
        for name in names:

            def progress(done: float, total: float, text: str, name: str = name) -> None:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_INTERVAL or (total and done >= total):  # the last step always shows
                    last[0] = now
                    self.post_message(msg.TrainProgressed(name, done, total, text))

            self.post_message(msg.TrainProgressed(name, 0, 1, "preparing"))
            try:
                record = engine.train(name, backend, progress=progress, cancel=cancel)
            except Cancelled:
                self.post_message(msg.TrainFinished(name, backend, f"{name}: training cancelled", False))
                return
            except UserError as exc:
                self.post_message(msg.TrainFinished(name, backend, str(exc), False))
                continue
            self.post_message(msg.TrainProgressed(name, 1, 1, "done"))
            self.post_message(
                msg.TrainFinished(name, backend, f"{name} on {backend}: trained on {record.n_plays} plays", True)
            )

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
        from mrs_tui.evaluation.training import ModelNotTrained

        try:
            result = self.engine.suggest(seed, pool=pool)
        except ModelNotTrained as exc:
            # Until the model exists, audio similarity answers, and the list says so.
            result = self.engine.suggest(seed, pool=pool, recommender="knn")
            result.note = f"{exc.problem}: showing knn meanwhile (t trains it)"
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

    def play_track(self, track: Track) -> None:
        if self.player is None or self.engine is None:
            return
        if self.previews_reason is None:
            self.previews_reason = self.player.check()
            if self.previews_reason is not None:
                self.notify(self.previews_reason, title="Previews", severity="warning", timeout=10)
        if self.previews_reason is not None:
            return
        self.load_and_play(track)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_and_play(self, track: Track) -> None:
        from mrs_tui.player import PlaybackUnavailable, load_preview

        try:
            audio = load_preview(track.path, track.duration, self.settings.preview_seconds, self.settings.clip_position)
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
        main.request_suggestions(message.track.id)

    @updates_main_screen
    def on_preview_ended(self, message: msg.PreviewEnded) -> None:
        play = self.record_preview_end(message.ended)
        main = self.main
        if main is None or play is None:
            return
        main.player_bar.stopped(f"■ {play.event}: {self.track_title(play.track_id)}")
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
        track = self.engine.store.track(track_id) if self.engine else None
        return track.display_title if track else str(track_id)

    @updates_main_screen
    def rate(self, track_id: int, event: str) -> None:
        main = self.main
        if main is None or self.engine is None:
            return
        self.engine.record(track_id, event)
        self.notify(f"{'liked' if event == 'like' else 'disliked'}: {self.track_title(track_id)}")
        if event == "like":
            main.mark_played(track_id)
        main.request_suggestions()
        self.maybe_retrain()

    def on_notice(self, message: msg.Notice) -> None:
        self.notify(message.text, severity=message.severity, timeout=8)

    # -- models ------------------------------------------------------------------------------------------

    def action_pick_backend(self) -> None:
        main = self.main
        if main is None:
            return
        from mrs_tui.tui.screens.pickers import BackendPicker

        if self.engine is None:
            return

        def chosen(name: str | None) -> None:
            if not name or name == self.engine.backend:
                return
            self.engine.backend = name
            main.show_models(self.engine.backend, self.engine.recommender)
            self.refresh_library()
            main.request_suggestions()
            if self.slow_backend(name):
                # Tens of seconds per track: the user chooses what to spend that on.
                self.notify(
                    f"{name} takes about {self.seconds_per_track(name):.0f} s per track here: "
                    "a analyses the highlighted track, A the visible list, i the whole library",
                    title="Analysis",
                    timeout=12,
                )
            else:
                self.start_indexing(main.library.visible_track_ids if self.folder is None else None)

        self.push_screen(BackendPicker(self.engine), chosen)

    @staticmethod
    def seconds_per_track(name: str) -> float:
        import backends

        spec = backends.get_spec(name)
        return spec.cpu_seconds_per_track or 0.0

    def slow_backend(self, name: str) -> bool:
        """Tens of seconds per track on this machine's CPU (a GPU makes every backend quick)."""
        import backends

        spec = backends.get_spec(name)
        gpu = backends._gpu_visible()
        return not gpu and (spec.cpu_seconds_per_track is None or spec.cpu_seconds_per_track > 2.0)

    def action_pick_recommender(self) -> None:
        main = self.main
        if main is None:
            return
        from mrs_tui.tui.screens.pickers import RecommenderPicker

        if self.engine is None:
            return

        def chosen(name: str | None) -> None:
            if name and name != self.engine.recommender:
                self.engine.recommender = name
                main.show_models(self.engine.backend, self.engine.recommender)
                main.request_suggestions()

        self.push_screen(RecommenderPicker(self.engine), chosen)

    def action_compare(self) -> None:
        main = self.main
        if main is None:
            return
        from mrs_tui.tui.screens.compare import CompareScreen

        if self.engine is None:
            return
        from mrs_tui.comparison import ComparisonSeed

        self.push_screen(CompareScreen(self.engine, ComparisonSeed(track=main.selected_track_id)))

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

    def queue_track(self, track: Track) -> None:
        """The one place lists hand a track to the play queue."""
        self.notify(f"the play queue is not available in this version: {track.display_title} not queued")

    def train_pair(self, recommender: str, backend: str) -> None:
        """Train one (recommender, backend) pair in the background (the compare screen's t)."""
        import recommenders

        if not recommenders.get_spec(recommender).trainable:
            self.notify(f"{recommender} learns nothing in advance: nothing to train", severity="warning")
            return
        if self.training:
            self.notify("a model is already training (c cancels it)", title="Training")
            return
        self.cancel_training = threading.Event()
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
        for recommender, backend in self.engine.untrained_winners():
            self.cancel_training = threading.Event()
            self._train([recommender], backend)
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
        self.cancel_indexing.set()
        self.cancel_training.set()
        # Record the preview that is cut short here: a message posted now would never be handled.
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
) -> MrsTuiApp:
    """The one place the app is built: the CLI, the tests and the benchmarks all call this."""
    return MrsTuiApp(db_path=db_path, folder=folder, settings=settings, player=player, index_on_start=index_on_start)
