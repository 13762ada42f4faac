"""Modal pickers for the backend and the recommender, with what the user needs to choose."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

import backends
import recommenders
from mrs_tui.engine import Engine


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

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def options(self) -> list[Option]:
        counts = self.engine.store.embedding_counts()
        out = []
        for spec in backends.list_specs():
            status = backends.backend_status(spec.name)
            analysed = counts.get((spec.name, self.engine.version(spec.name)), (0, 0))[0]
            text = Text()
            text.append(f"{spec.name:11s}", style="bold" if spec.name == self.engine.backend else "")
            text.append(f" {status.state:16s}", style="green" if status.ready else "yellow")
            text.append(f" {spec.dim:5d}-d  {analysed:5d} analysed  ")
            text.append(spec.weights_license, style="dim")
            if status.detail:
                text.append(f"\n{'':12s}{status.detail}", style="dim")
            out.append(Option(text, id=spec.name, disabled=not status.ready))
        return out


class RecommenderPicker(_Picker):
    heading = "Recommender (enter picks)"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def options(self) -> list[Option]:
        out = []
        for spec in recommenders.REGISTRY.values():
            text = Text()
            text.append(f"{spec.name:12s}", style="bold" if spec.name == self.engine.recommender else "")
            text.append(spec.description, style="dim")
            info = self.model_line(spec.name)
            if info:
                text.append(f"\n{'':12s}{info}", style="dim")
            out.append(Option(text, id=spec.name))
        return out

    def model_line(self, name: str) -> str:
        describe = getattr(self.engine, "model_info", None)
        if describe is None:
            return ""
        try:
            info = describe(name, self.engine.backend)
        except Exception:  # noqa: BLE001 - a picker must open even when a model file is unreadable
            return "model information unavailable"
        return info.describe() if info else ""
