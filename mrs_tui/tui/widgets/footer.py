"""The key footer: one widget that draws the screen's keys on one line.

Textual's Footer is a container with one widget per key, re-composed whenever the screen's
bindings may have changed. Each screen push then mounts, styles and lays out a dozen or two
widgets; measured on the compare screen that was the largest part of the keypress after the
comparison itself. This footer draws the same line itself (key in the accent colour, then
its description, the command palette's key on the right) and repaints only when the keys it
shows change. A click on a key presses it, as in Textual's footer.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class ShownKey:
    key: str  # what a click presses
    display: str
    description: str
    enabled: bool


class KeyFooter(Widget):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-footer--key", "key-footer--description", "key-footer--disabled"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    KeyFooter > .key-footer--key { color: $footer-key-foreground; background: $footer-key-background; text-style: bold; }
    KeyFooter > .key-footer--description {
        color: $footer-description-foreground; background: $footer-description-background;
    }
    KeyFooter > .key-footer--disabled { text-style: dim; }
    """

    def __init__(self, *, show_command_palette: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.show_command_palette = show_command_palette
        self.keys: tuple[ShownKey, ...] = ()
        self.palette: ShownKey | None = None
        self._spans: list[tuple[int, int, ShownKey]] = []  # x ranges of the last render, for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self._read_keys()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
        # A screen under another one reads the bindings of the one on top: it waits until it is
        # shown again (a stack change tells it).
        if self.is_attached and screen is self.screen and screen is self.app.screen:
            self._read_keys()

    def _read_keys(self) -> None:
        active = self.screen.active_bindings
        keys: dict[str, ShownKey] = {}  # one entry per action: its first key
        for _, binding, enabled, _tooltip in active.values():
            if binding.show and binding.action not in keys:
                keys[binding.action] = ShownKey(
                    binding.key, self.app.get_key_display(binding), binding.description, enabled
                )
        palette = None
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = active.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _, binding, enabled, _tooltip = found
                palette = ShownKey(binding.key, self.app.get_key_display(binding), binding.description, enabled)
        shown = tuple(keys.values())
        if shown != self.keys or palette != self.palette:
            self.keys, self.palette = shown, palette
            self.refresh()

    def _entry(self, key: ShownKey) -> Text:
        style = self.get_component_rich_style("key-footer--key")
        description = self.get_component_rich_style("key-footer--description")
        entry = Text.assemble(
            (f" {key.display} ", style), (f"{key.description} " if key.description else "", description)
        )
        if not key.enabled:
            entry.stylize(self.get_component_rich_style("key-footer--disabled"))
        return entry

    def render(self) -> Text:
        width = self.content_size.width
        palette = self._entry(self.palette) if self.palette is not None else Text()
        room = max(width - palette.cell_len - 1, 0) if self.palette is not None else width
        line = Text(no_wrap=True, overflow="ellipsis")
        self._spans = []
        for key in self.keys:
            entry = self._entry(key)
            if line.cell_len + entry.cell_len > room:  # the rest are on the help screen (?)
                break
            self._spans.append((line.cell_len, line.cell_len + entry.cell_len, key))
            line.append_text(entry)
        if self.palette is not None:
            start = max(width - palette.cell_len, line.cell_len)
            line.append(" " * (start - line.cell_len))
            self._spans.append((start, start + palette.cell_len, self.palette))
            line.append_text(palette)
        return line

    def on_mouse_down(self, event: events.MouseDown) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                if key.enabled:
                    self.app.simulate_key(key.key)
                else:
                    self.app.bell()
                return
