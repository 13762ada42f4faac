"""The player side of the app, driven through Textual's Pilot: transport keys, the queue and
radio moving on by themselves, the queue and history screens, the import prompt, the palette."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.player import PlaybackEnded, Player
from mrs_tui.store import Store
from mrs_tui.tui.app import create_app
from mrs_tui.tui.screens.history import HistoryScreen, ImportReport
from mrs_tui.tui.screens.queue import NamePrompt, QueueScreen
from tests.conftest import make_library

SIZE = (150, 45)
EXPORTS = Path(__file__).resolve().parent.parent / "data" / "exports"


class FakeDevice(Player):
    """The real Player's controls over a pretend device (real PortAudio: test_playback.py).

    `run_out()` plays the rest of the track as if the device had taken it, ending it by itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started: list[int | None] = []
        self._active = False

    def check(self) -> str | None:
        return None

    def play(self, samples: np.ndarray, sample_rate: int, *, track_id: int | None = None) -> None:
        self.stop()
        with self._lock:
            self._buffer, self._rate, self._frame, self._heard_frames = samples, sample_rate, 0, 0
            self._track_id, self._reported, self._paused, self._active = track_id, False, False, True
        self.started.append(track_id)

    @property
    def playing(self) -> bool:
        return self._active

    def stop(self) -> PlaybackEnded | None:
        if not self._active:
            return None
        self._active = False
        return self._report(finished=False)

    def run_out(self) -> None:
        self._heard_frames += len(self._buffer) - self._frame
        self._frame = len(self._buffer)
        self._active = False
        self._report(finished=True)


async def wait_for(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


@pytest.fixture(scope="module")
def analysed_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tui-player")
    root = folder / "music"
    make_library(root, styles=("techno", "piano", "chiptune"), per_style=3, seconds=2.0, formats=(".flac", ".ogg"))
    store = Store.open(folder / "lib.db")
    engine = Engine(store, Settings(backend="mfcc"))
    engine.scan(root)
    engine.index(["mfcc"])
    store.close()
    return folder / "lib.db"


@pytest.fixture
def db(analysed_db, tmp_path):
    target = tmp_path / "lib.db"
    shutil.copy(analysed_db, target)
    data = analysed_db.parent / "lib-data"
    if data.exists():
        shutil.copytree(data, tmp_path / "lib-data")
    return target


def make_app(db, **settings):
    player = FakeDevice()
    app = create_app(db_path=db, settings=Settings(backend="mfcc", **settings), player=player, index_on_start=False)
    return app, player


async def ready(pilot, app):
    await wait_for(pilot, lambda: app.engine is not None and app.main is not None and app.main.library.tracks)


def test_transport_keys_pause_seek_volume_and_mode(db):
    async def go():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await pilot.press("enter")
            await wait_for(pilot, lambda: player.playing)
            await pilot.press("space")
            assert player.paused
            assert "⏸" in str(app.main.player_bar.query_one("#player-title").render())
            await pilot.press("space")
            assert not player.paused
            await pilot.press("right")
            assert player.position == pytest.approx(min(5.0, player.length - 1 / player._rate), abs=0.01)
            await pilot.press("comma")
            assert player.position == 0.0
            await pilot.press("minus", "minus")
            assert player.volume == pytest.approx(0.8)
            assert "vol 80%" in str(app.main.player_bar.query_one("#player-volume").render())
            await pilot.press("plus")
            assert player.volume == pytest.approx(0.9)
            await pilot.press("m")
            assert app.settings.playback == "full"

    asyncio.run(go())


def test_queue_plays_on_by_itself_and_previous_goes_back(db):
    async def go():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            library = app.main.library
            ids = library.visible_track_ids
            await pilot.press("z", "j", "z", "j", "z")  # queue three tracks
            assert [e.track_id for e in app.queue.upcoming] == ids[:3]
            await pilot.press("n")
            await wait_for(pilot, lambda: player.started == [ids[0]])
            player.run_out()
            await wait_for(pilot, lambda: player.started == [ids[0], ids[1]])
            assert app.engine.store.plays(events=["complete"])[0].track_id == ids[0]  # heard to the end: a play
            await pilot.press("n")  # cut short: a skip, then the next one
            await wait_for(pilot, lambda: player.started[-1] == ids[2])
            assert app.engine.store.plays(events=["skip"])[-1].track_id == ids[1]
            await pilot.press("N")
            await wait_for(pilot, lambda: player.started[-1] == ids[1])

    asyncio.run(go())


def test_radio_refills_the_queue_and_each_entry_says_why(db):
    async def go():
        # nine tracks by three artists (one album each): a window of 3 makes the radio rotate them
        app, player = make_app(
            db, radio_batch=3, radio_refill_below=2, diversity_window=3, diversity_artist_cap=1, diversity_album_cap=1
        )
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            seed = app.main.library.selected_track_id
            await pilot.press("R")
            await wait_for(pilot, lambda: player.started)  # nothing was playing: the radio starts
            assert app.radio is not None and len(app.queue.entries) == 3
            for _ in range(5):
                before = len(player.started)
                player.run_out()
                await wait_for(pilot, lambda before=before: len(player.started) == before + 1)
            assert len(player.started) == 6
            assert len(set(player.started)) == 6  # no repeats
            assert seed not in player.started  # the seed itself is never suggested back
            artists = [app.track_info(t).artist for t in player.started]
            assert all(len(set(artists[i : i + 3])) == 3 for i in range(4))  # the window of 3 held
            await pilot.press("2")
            assert isinstance(app.screen, QueueScreen)
            why = str(app.screen.query_one("#queue-why").render())
            assert "radio from" in why and "let through: artist" in why
            await pilot.press("1")
            assert app.screen is app.main

    asyncio.run(go())


def test_queue_screen_reorders_removes_clears_and_saves_a_playlist(db):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            ids = app.main.library.visible_track_ids
            app.queue.add(ids[:4])
            await pilot.press("2")
            screen = app.screen
            await pilot.press("j", "J")  # second entry one place down
            assert app.queue.track_ids() == [ids[0], ids[2], ids[1], ids[3]]
            await pilot.press("x")
            assert app.queue.track_ids() == [ids[0], ids[2], ids[3]]
            assert screen.table.row_count == 3
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, NamePrompt)
            await pilot.press(*"evening", "enter")
            await wait_for(pilot, lambda: app.engine.store.playlist("evening") is not None)
            assert app.engine.store.playlist_track_ids(app.engine.store.playlist("evening").id) == app.queue.track_ids()
            await pilot.press("D")
            assert app.queue.track_ids() == []

    asyncio.run(go())


def test_history_screen_shows_sources_deletes_and_imports(db):
    async def go():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await pilot.press("enter")
            await wait_for(pilot, lambda: player.playing)
            player.run_out()
            await wait_for(pilot, lambda: app.engine.store.play_count(("complete",)) == 1)
            await pilot.press("3")
            assert isinstance(app.screen, HistoryScreen)
            screen = app.screen
            await wait_for(pilot, lambda: screen.sessions)
            sessions = screen.query_one("#sessions")
            assert sessions.get_row_at(0)[1] == "played here"
            # import through the prompt: the dry-run report first, then enter writes it
            await pilot.press("i")
            await pilot.press(*str(EXPORTS / "lastfm-scrobbles.csv"), "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportReport))
            report = str(app.screen.query_one("#import-report").render())
            # "Hammer & Felt - Classical 0" is in the fixture library; the rest of the file is not
            assert "6 listens: 1 to import (0 as skips), 5 unmatched, 0 ambiguous" in report
            assert "lastfm-scrobbles.csv:6: date is missing" in report
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(screen.sessions) == 2)
            labels = {sessions.get_row_at(i)[1] for i in range(2)}
            assert labels == {"played here", "imported (Last.fm)"}
            assert app.engine.store.play_count(("complete",)) == 2
            # delete the highlighted session, then everything
            await pilot.press("x")
            await wait_for(pilot, lambda: len(screen.sessions) == 1)
            await pilot.press("D", *"delete", "enter")
            await wait_for(pilot, lambda: not screen.sessions)
            assert app.engine.store.play_count(("play", "complete", "skip")) == 0

    asyncio.run(go())


def test_every_action_is_in_the_command_palette(db):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for wanted in (
                "Play highlighted track",
                "Pause or resume",
                "Next track",
                "Show the queue",
                "Import listening history",
                "Start radio from highlighted track",
                "Compare backends",
            ):
                assert wanted in titles
            await pilot.press("ctrl+p")
            await pilot.press(*"pause")
            await pilot.pause(0.5)
            from textual.command import CommandPalette

            palette = app.screen
            assert isinstance(palette, CommandPalette)
            assert "Pause or resume" in str(palette.query_one("CommandList").get_option_at_index(0).prompt)

    asyncio.run(go())


def test_single_keys_are_not_swallowed_by_the_search_box(db):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await pilot.press("tab", "tab")
            search = app.main.query_one("#search")
            assert app.focused is not search
            await pilot.press("z")
            assert len(app.queue.upcoming) == 1  # the key was a command, not a letter typed
            await pilot.press("slash", *"pia")
            assert search.value == "pia"
            await pilot.press("escape")
            assert app.focused is not search

    asyncio.run(go())


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_the_main_screen_is_usable_at_small_and_large_sizes(db, size):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=size) as pilot:
            await ready(pilot, app)
            main = app.main
            await wait_for(pilot, lambda: main.nextup.table.row_count > 0)
            table = main.nextup.table
            assert table.region.height - 1 >= min(10, table.row_count)  # the header plus at least 10 rows fit
            assert main.library.region.height >= 12
            title_width = main.library.column_widths()[0]
            assert title_width >= 14
            assert main.query_one("#details").display == (size[1] >= 32)

    asyncio.run(go())
