"""Cells of text: cut to terminal cells for the widgets that draw their own lines, and user
text kept literal for the widgets that read markup."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.text import Text


def fit(text: str, width: int) -> str:
    """`text` in exactly `width` terminal cells: padded, or cut with an ellipsis.

    Cells, not characters: a CJK title takes two cells a character, and counting characters
    would push every column after it out of line.
    """
    if width <= 0:
        return ""
    length = cell_len(text)
    if length <= width:
        return text + " " * (width - length)
    if width == 1:
        return "…"
    return set_cell_size(text, width - 1) + "…"


def literal(text: str) -> Text:
    """User text (a title, an artist, a file or playlist name) for a widget that reads markup
    in plain strings: shown as written. "Song [Live]" would otherwise lose its brackets, and a
    title holding "[/]" would stop the screen with a markup error."""
    return Text(text)
