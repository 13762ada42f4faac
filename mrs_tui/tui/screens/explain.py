"""Why this track? The mode and its reason, the nearest played tracks, MusiCNN's tags, who agrees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from mrs_tui.engine import Engine
    from mrs_tui.explain import Explanation
    from mrs_tui.queue import QueueEntry


def queued_entry(app, track_id: int) -> QueueEntry | None:
    """The queue's entry of the track, if it is queued: the one playing, else the next one up."""
    queue = getattr(app, "queue", None)
    if queue is None:
        return None
    current = queue.current
    if current is not None and current.track_id == track_id:
        return current
    return next((e for e in queue.upcoming if e.track_id == track_id), None)


@dataclass
class ExplanationReady(Message):
    explanation: Explanation | None
    error: str | None = None


class ExplainScreen(ModalScreen):
    BINDINGS = [Binding("escape,w,enter", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    ExplainScreen { align: center middle; }
    ExplainScreen #explain-box { width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1; }
    """

    def __init__(
        self,
        engine: Engine,
        track_id: int,
        *,
        seed: int | None = None,
        backend: str | None = None,
        recommender: str | None = None,
        queue_entry: QueueEntry | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.track_id = track_id
        self.queue_entry = queue_entry
        self.seed = seed
        self.backend = backend
        self.recommender = recommender
        self.explanation: Explanation | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="explain-box"):
            yield Static("working out why…", id="explain-text", markup=False)  # titles, not markup

    def on_mount(self) -> None:
        self.query_one("#explain-box").border_title = "Why this track · esc closes"
        if self.queue_entry is None:
            self.queue_entry = queued_entry(self.app, self.track_id)
        self.compute()

    @work(thread=True, exclusive=True, group="explain", exit_on_error=False)
    def compute(self) -> None:
        from mrs_tui.errors import UserError
        from mrs_tui.explain import explain

        pinned = {}
        if self.backend is not None or self.recommender is not None:
            pinned = {"backend": self.backend, "recommender": self.recommender}
        try:
            result = explain(self.engine, self.track_id, seed=self.seed, queue_entry=self.queue_entry, **pinned)
        except UserError as exc:
            self.post_message(ExplanationReady(None, str(exc)))
            return
        self.post_message(ExplanationReady(result))

    def on_explanation_ready(self, message: ExplanationReady) -> None:
        self.explanation = message.explanation
        text = "\n".join(message.explanation.lines()) if message.explanation else (message.error or "")
        self.query_one("#explain-text", Static).update(text)
