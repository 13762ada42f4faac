"""The key footer, rebuilt only when the keys it shows change.

Textual's Footer re-creates one widget per key whenever the screen's bindings *may* have
changed: every focus move, screen push and pop. Each rebuild mounts and styles a few dozen
widgets, and at 10k tracks that was the largest part of a keypress on the compare screen.
Most of those moves leave the shown keys as they were, so this footer compares what it would
show with what it shows and keeps its widgets when nothing changed; and it shows the keys from
its first compose instead of composing once empty and again after the first paint.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None  # what the last compose showed

    def shown_keys(self) -> tuple:
        """Everything the footer's widgets depend on: the shown bindings and their states."""
        keys = tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip, binding.group, binding.key_display)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )
        return keys, self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE, self.compact

    def compose(self) -> ComposeResult:
        # Textual's footer composes empty and fills itself after the screen's first refresh: one
        # more mount, layout and paint for every screen opened. The screen's bindings are known
        # when the footer is composed; a focus change that alters them recomposes it below.
        self.set_reactive(Footer._bindings_ready, True)
        self._shown = self.shown_keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        # A screen under another one reads the bindings of the one on top: it waits until it is
        # shown again (a stack change tells it), when its keys are usually the ones it shows.
        if self.is_attached and self.screen is self.app.screen and self.shown_keys() != self._shown:
            await self.recompose()
