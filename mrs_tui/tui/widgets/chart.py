"""Terminal bar charts with confidence whiskers, drawn with block and box characters.

Hand-drawn rather than plotext: no extra dependency, one line per bar so labels, bars and
numbers line up in 80 columns, and the output is plain Rich text (stable in snapshots).
A bar is the mean on a 0–1 scale; the whisker ├──┤ spans mean ± the 95 % half-width.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

BAR = "█"


@dataclass(frozen=True)
class Bar:
    label: str
    mean: float | None
    half_width: float | None
    n: int
    style: str = "cyan"


def bar_line(bar: Bar, width: int, label_width: int) -> Text:
    """`label ████████──┤   0.42 ± 0.05 n=34` on a 0..1 axis `width` cells wide."""
    line = Text(f"{bar.label[:label_width]:<{label_width}} ")
    if bar.mean is None:
        return line.append("·" * width + "  –", style="dim")
    cells = [" "] * width
    styles = [""] * width
    filled = max(0, min(width, round(bar.mean * width)))
    for i in range(filled):
        cells[i], styles[i] = BAR, bar.style
    if bar.half_width:
        low = max(0, min(width - 1, round((bar.mean - bar.half_width) * width)))
        high = max(0, min(width - 1, round((bar.mean + bar.half_width) * width)))
        for i in range(low, high + 1):
            if cells[i] == " ":
                cells[i], styles[i] = "─", "bold"
        cells[low], styles[low] = "├", f"bold {bar.style} reverse" if low < filled else "bold"
        cells[high], styles[high] = "┤", f"bold {bar.style} reverse" if high < filled else "bold"
    for cell, style in zip(cells, styles, strict=True):
        line.append(cell, style=style or None)
    numbers = f" {bar.mean:.2f}" + (f"±{bar.half_width:.2f}" if bar.half_width is not None else "") + f" n={bar.n}"
    return line.append(numbers)


NUMBERS_WIDTH = 16  # " 0.86±0.07 n=39" and a spare cell


def render_bars(bars: list[Bar], width: int = 30, title: str = "", label_width: int | None = None) -> Text:
    label_width = label_width or max([len(b.label) for b in bars] + [4])
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    axis = f"{'':<{label_width}} 0{' ' * (width - 2)}1"
    for bar in bars:
        out.append_text(bar_line(bar, width, label_width))
        out.append("\n")
    out.append(axis, style="dim")
    return out


class MetricChart(Widget):
    """A `render_bars` chart that sizes its bars to the width it is drawn at.

    Drawn in `render` rather than pushed with `update`: a resize then repaints it at the new
    width without asking for another layout pass (its height depends on the bars, not the width).
    """

    DEFAULT_CSS = "MetricChart { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bars: list[Bar] = []
        self.title = ""

    def show(self, bars: list[Bar], title: str = "") -> None:
        self.bars, self.title = bars, title
        self.refresh(layout=True)

    def chart(self, available: int) -> Text:
        if not self.bars:
            return Text(self.title)
        label_width = min(max([len(b.label) for b in self.bars] + [4]), max(8, available // 3))
        width = max(6, min(50, available - label_width - 1 - NUMBERS_WIDTH))
        return render_bars(self.bars, width, self.title, label_width)

    def render(self) -> Text:
        return self.chart(self.content_size.width or 80)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if not self.bars and not self.title:
            return 0
        return len(self.chart(width).wrap(self.app.console, max(width, 1)))
