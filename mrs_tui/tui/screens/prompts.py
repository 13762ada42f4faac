"""Small modal prompts: one line of text, a checklist of names, or a yes/no question."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, SelectionList

PROMPT_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 80; height: auto; max-height: 80%; border: round $accent; background: $surface;
    padding: 0 1; }}
{name} SelectionList {{ height: auto; max-height: 20; }}
"""


class TextPrompt(ModalScreen[str | None]):
    """Enter returns the text, escape returns None."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close")]
    DEFAULT_CSS = PROMPT_CSS.format(name="TextPrompt")

    def __init__(self, heading: str, value: str = "") -> None:
        super().__init__()
        self.heading = heading
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.heading)
            yield Input(self.value, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ChecklistPrompt(ModalScreen[list[str] | None]):
    """Space toggles, enter returns the checked names, escape returns None."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close"), Binding("enter", "done", "Done", priority=True)]
    DEFAULT_CSS = PROMPT_CSS.format(name="ChecklistPrompt")

    def __init__(self, heading: str, choices: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.heading = heading
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{self.heading} · space toggles, enter confirms")
            yield SelectionList[str](*((name, name, checked) for name, checked in self.choices), id="prompt-list")

    def action_done(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ConfirmPrompt(ModalScreen[bool]):
    """y or enter answers yes; n or escape answers no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", priority=True),
        Binding("n,escape", "answer(False)", "No", priority=True),
    ]
    DEFAULT_CSS = PROMPT_CSS.format(name="ConfirmPrompt")

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Label("y: yes · n: no", classes="prompt-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
