"""Blind A/B: two unlabelled lists for the same seed; pick the better one, then see which was which."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static

from mrs_tui.tui.widgets.cells import literal
from mrs_tui.tui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from mrs_tui.comparison import BlindRound, ComparisonSeed
    from mrs_tui.engine import Engine


@dataclass
class RoundReady(Message):
    round: BlindRound


@dataclass
class ChoiceStored(Message):
    reveal: str
    tally: str


class BlindScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "choose('left')", "Left is better"),
        Binding("2", "choose('right')", "Right is better"),
        Binding("equals_sign,0", "choose('same')", "Same"),
        Binding("n", "next_round", "Next round"),
    ]
    DEFAULT_CSS = """
    BlindScreen #ab-prompt { height: auto; padding: 0 1; }
    BlindScreen #ab-lists { height: 1fr; }
    BlindScreen .ab-side { width: 1fr; border: round $primary-darken-2; }
    BlindScreen .ab-side DataTable { height: 1fr; }
    BlindScreen #ab-result { height: auto; padding: 0 1; }
    """

    def __init__(
        self, engine: Engine, seed: ComparisonSeed, pairs: list[tuple[str, str]], *, k: int = 10, rng=None
    ) -> None:
        super().__init__()
        self.engine = engine
        self.seed = seed
        self.pairs = pairs
        self.k = k
        self.rng = rng or random.Random()
        self.round: BlindRound | None = None
        self.decided = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="ab-prompt")
        with Horizontal(id="ab-lists"):
            with Vertical(classes="ab-side"):
                yield Label("[b]Left[/b] (1)", id="ab-left-label")
                yield DataTable(id="ab-left", cursor_type="row")
            with Vertical(classes="ab-side"):
                yield Label("[b]Right[/b] (2)", id="ab-right-label")
                yield DataTable(id="ab-right", cursor_type="row")
        yield Static("", id="ab-result")
        yield KeyFooter()

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_columns("#", "Title", "Artist")
        self.new_round()

    def new_round(self) -> None:
        self.decided = False
        self.query_one("#ab-prompt", Static).update(
            literal(
                f"Which list would you rather hear after {self.seed.describe(self.engine.store)}? "
                "1: left · 2: right · =: the same. The names are shown after you choose."
            )
        )
        self.query_one("#ab-result", Static).update("")
        self.make_round()

    @work(thread=True, exclusive=True, group="ab", exit_on_error=False)
    def make_round(self) -> None:
        from mrs_tui.comparison import blind_round

        self.post_message(RoundReady(blind_round(self.engine, self.seed, *self.pairs, k=self.k, rng=self.rng)))

    def on_round_ready(self, message: RoundReady) -> None:
        self.round = message.round
        for side, column in (("left", self.round.left), ("right", self.round.right)):
            table = self.query_one(f"#ab-{side}", DataTable)
            table.clear()
            self.query_one(f"#ab-{side}-label", Label).update(
                f"[b]{side.title()}[/b] ({'1' if side == 'left' else '2'})"
            )
            items = column.result.items if column.result is not None else []
            for rank, item in enumerate(items, 1):
                table.add_row(str(rank), literal(item.track.display_title), literal(item.track.artist or ""))
            if not items:
                table.add_row("", column.error or "no suggestions", "")

    def action_choose(self, side: str) -> None:
        if self.round is None or self.decided:
            return
        self.decided = True
        self.store_choice(self.round, side)

    @work(thread=True, exclusive=True, group="ab-store", exit_on_error=False)
    def store_choice(self, round_: BlindRound, side: str) -> None:
        from mrs_tui.comparison import ab_stats

        reveal = round_.record(self.engine.store, side)
        names = {round_.pair_name(round_.a), round_.pair_name(round_.b)}
        tally = next((r["summary"] for r in ab_stats(self.engine.store) if {r["a"], r["b"]} == names), "")
        self.post_message(ChoiceStored(reveal, tally))

    def on_choice_stored(self, message: ChoiceStored) -> None:
        round_ = self.round
        self.query_one("#ab-left-label", Label).update(f"[b]Left[/b]: {round_.pair_name(round_.left)}")
        self.query_one("#ab-right-label", Label).update(f"[b]Right[/b]: {round_.pair_name(round_.right)}")
        self.query_one("#ab-result", Static).update(f"{message.reveal}\n{message.tally}\nn: another round")

    def action_next_round(self) -> None:
        self.new_round()
