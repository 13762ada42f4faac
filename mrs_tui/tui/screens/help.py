"""Keys at a glance."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """
# mrs-tui keys

| key | what it does |
|---|---|
| ↑ ↓ / j k | move in a list; the highlighted track seeds the suggestions |
| tab | switch between the library and the suggestions |
| / | search the library (esc clears) |
| enter, p | play a 30-s preview of the highlighted track |
| s | stop the preview (before half way it counts as a skip) |
| n | play the first suggestion |
| l / d | like / dislike what is playing (or highlighted) |
| f | cold-start view: only tracks the model has not learned from (for knn: never played), by their audio |
| i | scan the folder again and analyse what is new |
| a / A | analyse only the highlighted track / the visible (filtered) list |
| c | cancel analysis (it resumes where it stopped next time) or training |
| b | choose the embedding backend |
| r | choose the recommender |
| v | compare backends side by side for the highlighted track (x there: recommenders instead; b: blind A/B) |
| w | why this suggestion: its mode, nearest played tracks, MusiCNN tags, who else ranks it |
| u | serve each mode with the winner of your latest evaluation |
| t | train the selected recommender on your history (in the background) |
| e | evaluate backends × recommenders on your own history |
| ? | this help |
| q | quit |

Suggestions marked **new** are tracks nobody has played yet: they are suggested from their
audio alone. Everything you play, skip, like or dislike is kept in your local history and
changes the suggestions immediately.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 84; height: 80%; border: round $accent; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
