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
| ↑ ↓ / j k, g G | move in a list, top / bottom; the highlighted track seeds the suggestions |
| tab | switch between the library and the suggestions |
| / | search the library (enter keeps the filter, esc clears it) |
| 1 2 3 4 5 | main screen, queue, history, running jobs (progress, ETA, x cancels one), playlists |
| ctrl+s | save the suggestions (main screen) or the queue (queue screen) as a named playlist |
| ctrl+p | every action by name (command palette) |
| p | play the highlighted track (a preview, or the whole track after m); enter in the library too |
| space | pause / resume |
| ← → or , . | seek 5 s back / forward |
| + - | volume |
| s | stop (before half way it counts as a skip) |
| n / N | next in the queue (else the first suggestion) / previous |
| z | add the highlighted track to the queue |
| R | radio from the highlighted track: the queue refills itself, within the diversity rules |
| o | diversity rules: caps per artist and album, window, duplicates, recent plays, exploration (saved to the config file) |
| m | previews or whole tracks |
| l / d | like / dislike what is playing (or highlighted) |
| f | cold-start view: only tracks the model has not learned from (for knn: never played), by their audio |
| i | scan the folder again and analyse what is new |
| a / A | analyse only the highlighted track / the visible (filtered) list |
| c | cancel analysis (it resumes where it stopped next time) or training |
| b | choose the embedding backend |
| r | choose the recommender |
| v | compare backends side by side for the highlighted track (x there: recommenders instead; b: blind A/B) |
| w, enter | why this suggestion (in every suggestion list): its mode, nearest played tracks, MusiCNN tags, who else ranks it, the diversity rule that let it into the queue |
| u | serve each mode with the winner of your latest evaluation |
| t | train the selected recommender on your history (in the background) |
| e | evaluate backends × recommenders on your own history |
| queue screen | enter plays, J/K move, x removes, D clears upcoming, ctrl+s saves as playlist |
| playlists screen | enter adds to the queue, R radio, e renames, x deletes, E exports M3U; tab: its tracks (J/K move, x removes) |
| history screen | x deletes the highlighted play or session, D everything, i imports an export |
| ? | this help (? or esc closes) |
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
