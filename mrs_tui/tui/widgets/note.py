"""A Static of automatic height that asks for a layout pass only when its height changes.

Textual lays out the whole screen after every `Static.update`, in case the new text needs
more or fewer lines; on the main screen that was three layout passes per cursor move (the
"next up" title, the reason under it), each repainting every pane. Most updates keep the
line count, so this widget measures the new text at its current width and repaints only.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.visual import VisualType
from textual.widgets import Static


class Note(Static):
    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        super().update(content, layout=False)
        if not layout:
            return
        height = self.styles.height
        if height is not None and not height.is_auto:  # a fixed height (a stylesheet may set one)
            return
        width = self.content_size.width
        unmeasured = not self.is_mounted or not width
        if unmeasured or self.get_content_height(Size(width, 0), Size(width, 0), width) != self.content_size.height:
            self.refresh(layout=True)
