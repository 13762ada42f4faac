"""Bottom bars: background jobs (analysis with rate and ETA, training) and the preview player."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from mrs_tui.tui.widgets.cells import literal
from mrs_tui.tui.widgets.library import fmt_duration

if TYPE_CHECKING:
    from mrs_tui.indexing import IndexProgress


class JobStatus(Horizontal):
    """One background job's progress line (hidden while idle)."""

    DEFAULT_CSS = """
    JobStatus { height: 1; display: none; }
    JobStatus.-active { display: block; }
    JobStatus > Label { width: 1fr; padding: 0 1; }
    JobStatus > ProgressBar { width: auto; }
    """

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=None, show_eta=False)
        yield Label("")

    def show(self, text: str, done: float, total: float | None) -> None:
        self.add_class("-active")
        self.query_one(ProgressBar).update(total=total or None, progress=done)
        self.query_one(Label).update(text)

    def hide(self) -> None:
        self.remove_class("-active")


class IndexStatus(JobStatus):
    """Scanning and analysis; the ETA is the jobs board's, re-read every second (`refresh_eta`),
    so it keeps moving, and grows, while analysis reports nothing."""

    _analysis: tuple[str, str, int, int] | None = None

    def scanning(self, done: int, total: int) -> None:
        self._analysis = None
        self.show(f"scanning files {done}/{total}", done, total)

    def analysing(self, backend: str, p: IndexProgress) -> None:
        failed = f" · {p.failed} unreadable" if p.failed else ""
        stored = f" · {p.backends[0].done} stored" if len(p.backends) == 1 else f" · {p.describe_backends()}"
        stored += f" · {p.describe_nodes()}" if p.nodes else ""
        stored += f" · {p.decoded} decoded" if p.decoded > p.done else ""
        head = f"analysing with {backend}: {p.done}/{p.total}{stored} · {p.rate:.1f} tracks/s"
        self._analysis = (head, f"{failed} · c cancels · 4 lists jobs", p.done, p.total)
        self._show_analysis()

    def refresh_eta(self) -> None:
        if self._analysis is not None and self.has_class("-active"):
            self._show_analysis()

    def _show_analysis(self) -> None:
        head, tail, done, total = self._analysis
        jobs = getattr(self.app, "jobs", None)
        eta = jobs.eta_text("index") if jobs is not None else ""
        self.show(f"{head}{' · ' + eta if eta else ''}{tail}", done, total)

    def finished(self, text: str) -> None:
        self._analysis = None
        self.hide()
        self.app.notify(text, title="Indexing")


class PlayerBar(Horizontal):
    DEFAULT_CSS = """
    PlayerBar { height: 1; }
    PlayerBar > #player-title { width: 1fr; padding: 0 1; }
    PlayerBar > ProgressBar { width: auto; }
    PlayerBar > #player-time { width: 13; }
    PlayerBar > #player-volume { width: 9; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("■ nothing playing · p plays a preview", id="player-title")
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="player-bar")
        yield Label("", id="player-time")
        yield Label("vol 100%", id="player-volume")

    def playing(self, title: str) -> None:
        self.title_text = title
        self.query_one("#player-title", Label).update(literal(f"▶ {title}"))

    def set_paused(self, paused: bool) -> None:
        title = getattr(self, "title_text", "")
        self.query_one("#player-title", Label).update(literal(f"{'⏸' if paused else '▶'} {title}"))

    def set_volume(self, volume: float) -> None:
        self.query_one("#player-volume", Label).update(f"vol {volume:.0%}")

    def stopped(self, text: str = "■ nothing playing · p plays a preview") -> None:
        self.query_one("#player-title", Label).update(text)
        self.query_one("#player-time", Label).update("")
        self.query_one(ProgressBar).update(total=1, progress=0)

    def position(self, position: float, length: float) -> None:
        self.query_one(ProgressBar).update(total=max(length, 0.01), progress=position)
        self.query_one("#player-time", Label).update(f"{fmt_duration(position)} / {fmt_duration(length)}")
