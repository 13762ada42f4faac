"""Modal pickers for the backend and the recommender, with what the user needs to choose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

import recommenders
from backends import WEIGHTS_MISSING

if TYPE_CHECKING:
    from mrs_tui.engine import BackendRow
    from mrs_tui.training import ModelInfo


class _Picker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss_none", "Close")]
    DEFAULT_CSS = """
    _Picker { align: center middle; }
    _Picker > Vertical { width: 90; height: auto; max-height: 80%; border: round $accent; background: $surface; padding: 0 1; }
    _Picker OptionList { height: auto; max-height: 24; }
    """
    heading = ""

    def options(self) -> list[Option]:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.heading)
            yield OptionList(*self.options())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class BackendPicker(_Picker):
    heading = "Embedding backend (enter picks; analysis of the library starts for a new one)"

    def __init__(self, rows: list[BackendRow], current: str) -> None:
        super().__init__()
        self.rows = rows
        self.current = current

    def options(self) -> list[Option]:
        out = []
        for row in self.rows:
            text = Text()
            text.append(f"{row.name:11s}", style="bold" if row.name == self.current else "")
            text.append(f" {row.state:16s}", style="green" if row.ready else "yellow")
            speed = "GPU" if row.needs_gpu else (f"{row.seconds_per_track:.1f}" if row.seconds_per_track else "?")
            text.append(f" {row.dim:5d}-d  {row.analysed or 0:5d} analysed  {speed:>5s} s/track  ")
            text.append(row.weights_license, style="dim")
            if row.detail:
                text.append(f"\n{'':12s}{row.detail}", style="dim")
            # Missing weights can be fetched from here (the app asks first); a missing GPU cannot.
            out.append(Option(text, id=row.name, disabled=not (row.ready or row.state == WEIGHTS_MISSING)))
        return out


class RecommenderPicker(_Picker):
    heading = "Recommender (enter picks)"

    def __init__(self, infos: dict[str, ModelInfo | None], current: str) -> None:
        super().__init__()
        self.infos = infos
        self.current = current

    def options(self) -> list[Option]:
        out = []
        for spec in recommenders.REGISTRY.values():
            text = Text()
            text.append(f"{spec.name:12s}", style="bold" if spec.name == self.current else "")
            text.append(spec.description, style="dim")
            info = self.infos.get(spec.name)
            # None: the model's file could not be read; the picker still opens.
            line = info.describe() if info is not None else "model information unavailable"
            text.append(f"\n{'':12s}{line}", style="dim")
            out.append(Option(text, id=spec.name))
        return out
