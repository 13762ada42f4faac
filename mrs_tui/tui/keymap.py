"""Keys and looks from the config file: the `keys` table remaps actions, `theme` picks a theme.

Every binding the user may remap has an id (the action's name, or a spelled-out one for
actions with arguments, "seek-back"); `keys = {like = "L"}` hands that id to Textual's own
keymap. Names and keys are checked before the app opens, so a typo is one line naming the key
in the config file, never a binding that silently does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from textual.binding import Binding
from textual.keys import Keys, key_to_character

from mrs_tui.errors import UserError

MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}
NAMED_KEYS = {k.value for k in Keys} | {"space", "enter", "tab", "escape", "backspace", "delete"}


def with_ids(bindings: Iterable[Binding]) -> list[Binding]:
    """`bindings` with the action's name as the id of each that has none (so it can be remapped)."""
    return [b if b.id else dataclasses.replace(b, id=b.action.split("(", 1)[0]) for b in bindings]


class RemappableBindings:
    """First among a widget's bases: its own BINDINGS get ids before Textual reads them."""

    def __init_subclass__(cls, **kwargs) -> None:
        if "BINDINGS" in cls.__dict__:
            cls.BINDINGS = with_ids(cls.BINDINGS)
        super().__init_subclass__(**kwargs)


def remappable() -> dict[str, tuple[str, str]]:
    """Every action id the `keys` table may name -> (its default key, what it does)."""
    from mrs_tui.tui.app import MrsTuiApp
    from mrs_tui.tui.screens.history import HistoryScreen
    from mrs_tui.tui.screens.jobs import JobsScreen
    from mrs_tui.tui.screens.main import MainScreen
    from mrs_tui.tui.screens.playlists import PlaylistsScreen
    from mrs_tui.tui.screens.queue import QueueScreen

    found: dict[str, tuple[str, str]] = {}
    for owner in (MrsTuiApp, MainScreen, QueueScreen, HistoryScreen, PlaylistsScreen, JobsScreen):
        for binding in owner.BINDINGS:
            if isinstance(binding, Binding) and binding.id and binding.id not in found:
                found[binding.id] = (binding.key, binding.description)
    return found


def is_key(text: str) -> bool:
    *mods, base = text.strip().split("+")
    if any(m not in MODIFIERS for m in mods) or not base:
        return False
    if len(base) == 1 or base in NAMED_KEYS:
        return True
    character = key_to_character(base)  # "question_mark", "full_stop": keys named after what they type
    return character is not None and character.isascii()


def check_ui_settings(settings, where: str = "the config file") -> dict[str, str]:
    """The keymap for Textual from `settings.keys`, after checking it and `settings.theme`."""
    from textual.theme import BUILTIN_THEMES

    if settings.theme not in BUILTIN_THEMES:
        raise UserError(
            f"{where}: theme = {settings.theme!r} is not one of Textual's themes",
            f"use one of: {', '.join(BUILTIN_THEMES)}",
        )
    known = remappable()
    keymap: dict[str, str] = {}
    for action, keys in settings.keys.items():
        if action not in known:
            raise UserError(f"{where}: keys: unknown action {action!r}", f"actions: {', '.join(sorted(known))}")
        wanted = [k.strip() for k in keys.split(",")]
        bad = next((k for k in wanted if not is_key(k)), None)
        if bad is not None:
            raise UserError(
                f"{where}: keys: {action} = {keys!r}: {bad!r} is not a key",
                'e.g. "L", "ctrl+q", "f5", "space" or several: "j,down"',
            )
        keymap[action] = ",".join(wanted)
    return keymap


class UiSettingsMixin:
    """Needs the app's `settings`; `apply_ui_settings` runs when the app mounts."""

    def apply_ui_settings(self) -> None:
        where = str(self.settings.source) if self.settings.source else "settings"
        try:
            keymap = check_ui_settings(self.settings, where)
        except UserError as exc:  # the CLI checks first; an app built in code says it here
            self.notify(str(exc), title="Settings", severity="error", timeout=15)
            return
        self.theme = self.settings.theme
        if keymap:
            self.set_keymap(keymap)
