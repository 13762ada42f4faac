"""The diversity settings (key o): caps per artist and album, window, duplicates, recent plays
and exploration, changed in the app. Saving checks every value (a bad one is named, nothing
changes), applies the rules to the running radio from its next refill, and writes them to the
config file, keeping its comments."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static, Switch

from mrs_tui.diversity import EXPLORATION_MODES, DiversityRules

LABELS = {
    "artist_cap": "tracks per artist within the window",
    "album_cap": "tracks per album within the window",
    "window": "window (consecutive tracks)",
    "no_duplicates": "no duplicates (same content)",
    "near_duplicate_cosine": "near-duplicate above cosine (1.0: off)",
    "recent_hours": "nothing heard in the last hours (0: off)",
    "exploration": "exploration",
    "top_k": "greedy: from the top K",
    "temperature": "sample: temperature",
}


class DiversityScreen(ModalScreen[DiversityRules | None]):
    """Returns the new rules (checked) or None when cancelled."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]
    DEFAULT_CSS = """
    DiversityScreen { align: center middle; }
    DiversityScreen > VerticalScroll { width: 76; height: auto; max-height: 90%; border: round $accent;
        background: $surface; padding: 0 1; }
    DiversityScreen Horizontal { height: 1; margin-bottom: 1; }
    DiversityScreen Horizontal > Label { width: 42; padding: 0 1 0 0; }
    DiversityScreen Horizontal > Input, DiversityScreen Horizontal > Select { width: 1fr; }
    DiversityScreen Input { height: 1; border: none; padding: 0 1; }
    DiversityScreen Switch { height: 1; border: none; padding: 0; }
    DiversityScreen Select { height: 1; }
    DiversityScreen SelectCurrent { height: 1; border: none; padding: 0 1; }
    DiversityScreen #diversity-error { color: $error; height: auto; }
    """

    def __init__(self, rules: DiversityRules, where: str) -> None:
        super().__init__()
        self.rules = rules
        self.where = where

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"Diversity rules · enter or ctrl+s saves to {self.where} · esc cancels")
            for f in fields(DiversityRules):
                value = getattr(self.rules, f.name)
                with Horizontal():
                    yield Label(LABELS[f.name])
                    if f.name == "exploration":
                        yield Select([(m, m) for m in EXPLORATION_MODES], value=value, allow_blank=False, id=f.name)
                    elif f.name == "no_duplicates":
                        yield Switch(value=value, id=f.name)
                    else:
                        yield Input(f"{value:g}" if isinstance(value, float) else str(value), id=f.name)
            yield Static("", id="diversity-error")

    def on_mount(self) -> None:
        self.query_one("#artist_cap", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def values(self) -> dict[str, object]:
        """The form's values as the settings' types; a value that is not a number stays text (refused later)."""
        out: dict[str, object] = {}
        for f in fields(DiversityRules):
            widget = self.query_one(f"#{f.name}")
            if isinstance(widget, Input):
                text = widget.value.strip()
                kind = type(getattr(DiversityRules(), f.name))
                try:
                    out[f.name] = kind(text)
                except ValueError:
                    out[f.name] = text
            else:
                out[f.name] = widget.value
        return out

    def action_save(self) -> None:
        from mrs_tui.config import Settings
        from mrs_tui.errors import UserError

        values = self.values()
        try:
            checked = Settings(**{f"diversity_{name}": value for name, value in values.items()})  # each key alone
            rules = DiversityRules.from_settings(checked)  # and the rules together
        except UserError as exc:
            self.query_one("#diversity-error", Static).update(str(exc).replace("settings: ", "", 1))
            return
        self.dismiss(rules)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
