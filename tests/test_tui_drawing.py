"""The app's own drawing: the one-line key footer, notes that grow with their text, columns
measured in terminal cells, and the garbage collector kept off the keypress path."""

from __future__ import annotations

import asyncio
import gc

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from mrs_tui.tui import collector
from mrs_tui.tui.widgets.cells import fit
from mrs_tui.tui.widgets.footer import KeyFooter
from mrs_tui.tui.widgets.note import Note
from mrs_tui.tui.widgets.ranked import RankedList


def screen_text(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


class KeysScreen(Screen):
    BINDINGS = [
        Binding("a", "mark('a')", "Alpha"),
        Binding("b", "mark('b')", "Bravo"),
        Binding("h", "mark('h')", "Hidden", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("body")
        yield KeyFooter()

    def action_mark(self, what: str) -> None:
        self.marks.append(what)


class OneScreen(App):
    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.first = screen

    def on_mount(self) -> None:
        self.push_screen(self.first)


def test_the_footer_shows_the_screens_keys_and_a_click_presses_one():
    async def scenario():
        screen = KeysScreen()
        app = OneScreen(screen)
        async with app.run_test(size=(80, 10)) as pilot:
            await pilot.pause()
            footer = screen_text(app)[-1]
            assert "a Alpha" in footer and "b Bravo" in footer
            assert "Hidden" not in footer
            assert footer.rstrip().endswith("palette")  # the command palette's key on the right
            column = footer.index("b Bravo")
            await pilot.click(KeyFooter, offset=(column + 1, 0))
            assert screen.marks == ["b"]

    asyncio.run(scenario())


def test_the_footer_drops_keys_that_do_not_fit_rather_than_wrapping():
    async def scenario():
        screen = KeysScreen()
        app = OneScreen(screen)
        async with app.run_test(size=(24, 6)) as pilot:
            await pilot.pause()
            footer = screen_text(app)[-1]
            assert len(footer) == 24 and "a Alpha" in footer and "Bravo" not in footer

    asyncio.run(scenario())


class NoteScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Note("one line", id="note")
        yield Static("below", id="below")


def test_a_note_grows_and_shrinks_with_its_text():
    async def scenario():
        app = OneScreen(NoteScreen())
        async with app.run_test(size=(30, 10)) as pilot:
            await pilot.pause()
            note = app.screen.query_one(Note)
            below = app.screen.query_one("#below")
            assert below.region.y == 1
            note.update("a text long enough to need two lines at this width")
            await pilot.pause()
            assert note.size.height == 2 and below.region.y == 2
            assert " ".join(" ".join(screen_text(app)[:2]).split()).endswith("at this width")
            note.update("short again")
            await pilot.pause()
            assert note.size.height == 1 and below.region.y == 1

    asyncio.run(scenario())


def test_cells_are_cut_by_terminal_width_not_by_characters():
    assert fit("abc", 5) == "abc  "
    assert fit("abcdef", 4) == "abc…"
    wide = "東京の夜"  # two cells a character
    assert fit(wide, 5) == "東京…"
    assert fit(wide, 8) == wide
    assert fit("x", 0) == ""


def test_ranked_list_columns_line_up_with_wide_titles():
    class ListScreen(Screen):
        def compose(self) -> ComposeResult:
            ranked = RankedList(flex=1)
            ranked.add_columns("#", "Title", "Rank")
            ranked.set_rows([("1", "東京の夜", "top 1%"), ("2", "plain", "top 2%")])
            yield ranked

    async def scenario():
        app = OneScreen(ListScreen())
        async with app.run_test(size=(30, 5)) as pilot:
            await pilot.pause()
            lines = screen_text(app)
            # The rank column starts in the same terminal cell on both rows.
            from rich.cells import cell_len

            starts = [cell_len(line[: line.index("top")]) for line in lines[1:3]]
            assert starts[0] == starts[1]

    asyncio.run(scenario())


def test_the_app_collects_garbage_when_idle_and_leaves_the_collector_as_it_was(monkeypatch):
    monkeypatch.setattr(collector, "CHECK_EVERY", 0.05)
    monkeypatch.setattr(collector, "QUICK_AFTER", 0.1)

    class Collecting(collector.IdleCollectionMixin, App):
        def on_mount(self) -> None:
            self.start_idle_collection()

    async def scenario():
        app = Collecting()
        async with app.run_test(size=(20, 5)) as pilot:
            assert gc.get_freeze_count() == 0
            await pilot.pause(0.4)
            assert gc.get_freeze_count() > 0  # the survivors of the idle collection are frozen
            await pilot.press("x")  # input: the next idle moment collects again
            assert not app._collected_since_input
            await pilot.pause(0.4)
            assert app._collected_since_input
        assert gc.get_freeze_count() == 0

    asyncio.run(scenario())
