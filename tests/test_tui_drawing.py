"""The app's own drawing: the one-line key footer, notes that grow with their text, columns
measured in terminal cells, titles shown as written, and the garbage collector kept off the
keypress path."""

from __future__ import annotations

import asyncio
import gc

import pytest
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


@pytest.mark.parametrize("width", [80, 24])
def test_the_footer_shows_the_screens_keys_drops_what_does_not_fit_and_a_click_presses_one(width):
    async def scenario():
        screen = KeysScreen()
        app = OneScreen(screen)
        async with app.run_test(size=(width, 10)) as pilot:
            await pilot.pause()
            footer = screen_text(app)[-1]
            assert len(footer) == width and "a Alpha" in footer and "Hidden" not in footer
            if width < 30:  # no room: the keys that do not fit are left out, not wrapped
                assert "Bravo" not in footer
                return
            assert "b Bravo" in footer
            assert footer.rstrip().endswith("palette")  # the command palette's key on the right
            column = footer.index("b Bravo")
            await pilot.click(KeyFooter, offset=(column + 1, 0))
            assert screen.marks == ["b"]

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


def test_titles_with_brackets_are_shown_as_written_everywhere(tmp_path):
    """Music is full of "[Live]" and "[Remix]": they are titles, not markup (and "[/]" used to stop the app)."""
    import numpy as np

    from backends import embedding_version
    from mrs_tui.config import Settings
    from mrs_tui.store import Store
    from mrs_tui.store.bulk import BulkTrack, write_bulk_history
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.queue import QueueScreen
    from mrs_tui.tui.widgets.library import TrackList
    from mrs_tui.tui.widgets.suggestions import SuggestionTable

    title, artist = "Tune [Live] [/] at [b]Wembley", "[The] Band"
    tracks = [BulkTrack(f"/m/{i}.flac", title if i == 0 else f"other {i}", artist, "rock") for i in range(6)]
    vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    with Store.open(tmp_path / "lib.db") as store:
        write_bulk_history(store, tracks, {("mfcc", embedding_version("mfcc")): vectors}, [], source="app")

    async def scenario():
        log = []
        app = create_app(
            db_path=tmp_path / "lib.db", settings=Settings(backend="mfcc"), index_on_start=False, player=None
        )
        async with app.run_test(size=(160, 50), message_hook=log.append) as pilot:
            while not any(isinstance(m, msg.EngineReady) for m in log):
                await pilot.pause(0.05)
            library = app.screen.query_one(TrackList)
            library.focus()
            await pilot.pause(0.3)
            while app.screen.query_one(SuggestionTable).row_count == 0:
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            text = "\n".join(screen_text(app))
            assert f"Title  {title}" in text and f"Artist {artist}" in text  # the details pane
            nextup = app.screen.query_one("#nextup-mode").render()  # wrapped on screen: its own text
            assert f"seed: {title}" in getattr(nextup, "plain", str(nextup))
            track = library.tracks[library.selected_track_id]
            app.queue_track(track, why="a test")
            await pilot.pause(0.3)
            queued = [n for n in app._notifications if n.message.startswith("queued: ")]
            assert queued and title in queued[0].message and not queued[0].markup
            app.push_screen(QueueScreen())
            await pilot.pause(0.5)
            assert title in "\n".join(screen_text(app))

    asyncio.run(scenario())
