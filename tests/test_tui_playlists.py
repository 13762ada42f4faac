"""The playlists screen (key 5) and saving lists as playlists, driven through Pilot."""

from __future__ import annotations

import asyncio

from mrs_tui.tui.screens.playlists import PlaylistsScreen
from mrs_tui.tui.screens.prompts import ConfirmPrompt
from mrs_tui.tui.screens.queue import NamePrompt
from tests import test_tui_player as player_tests
from tests.test_tui_player import SIZE, make_app, ready, wait_for

analysed_db = player_tests.analysed_db  # the same fixtures: an analysed library, copied per test
db = player_tests.db


def cells(table, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def test_suggestions_saved_as_a_playlist_asks_before_replacing_one(db):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            store = app.engine.store
            store.save_playlist("evening", [app.main.library.visible_track_ids[0]])
            await wait_for(pilot, lambda: app.main.nextup.table.items)
            suggested = [item.track.id for item in app.main.nextup.table.items]
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, NamePrompt)
            await pilot.press(*"evening", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPrompt))
            assert "exists (1 tracks)" in str(app.screen.query("Label").first().render())
            await pilot.press("n")  # no: the playlist stays as it was
            await pilot.pause()
            assert store.playlist_track_ids(store.playlist("evening").id) == [app.main.library.visible_track_ids[0]]
            await pilot.press("ctrl+s", *"evening", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPrompt))
            await pilot.press("y")
            await wait_for(pilot, lambda: store.playlist("evening").tracks == len(suggested))
            assert store.playlist_track_ids(store.playlist("evening").id) == suggested

    asyncio.run(go())


def test_open_edit_rename_and_delete_playlists(db):
    async def go():
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            store = app.engine.store
            ids = app.main.library.visible_track_ids
            store.save_playlist("dinner", ids[:4])
            store.save_playlist("run", ids[4:6])
            await pilot.press("5")
            screen = app.screen
            assert isinstance(screen, PlaylistsScreen)
            await wait_for(pilot, lambda: screen.names.row_count == 2)
            assert cells(screen.names, 0) == ["dinner", "run"]
            titles = [app.track_info(i).display_title for i in ids[:4]]
            assert cells(screen.tracks, 1) == titles
            # open: enter adds the playlist to the queue, each entry saying where it came from
            await pilot.press("enter")
            assert app.queue.track_ids() == ids[:4]
            assert app.queue.entries[0].why == "from playlist 'dinner'"
            # edit its tracks: tab to them, move the first one down, remove the last one
            await pilot.press("tab", "J")
            await wait_for(pilot, lambda: store.playlist_track_ids(store.playlist("dinner").id)[:2] == [ids[1], ids[0]])
            await pilot.press("G", "x")
            await wait_for(pilot, lambda: store.playlist("dinner").tracks == 3)
            assert store.playlist_track_ids(store.playlist("dinner").id) == [ids[1], ids[0], ids[2]]
            assert cells(screen.tracks, 1) == [titles[1], titles[0], titles[2]]
            # rename, then delete (after a yes)
            await pilot.press("shift+tab", "e")
            assert isinstance(app.screen, NamePrompt)
            prompt = app.screen.query_one("Input")
            prompt.value = ""
            await pilot.press(*"supper", "enter")
            await wait_for(pilot, lambda: store.playlist("supper") is not None)
            assert store.playlist("dinner") is None
            await wait_for(pilot, lambda: cells(screen.names, 0) == ["run", "supper"])
            assert screen.current_name() == "supper"
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmPrompt)
            await pilot.press("y")
            await wait_for(pilot, lambda: store.playlist("supper") is None)
            await wait_for(pilot, lambda: cells(screen.names, 0) == ["run"])

    asyncio.run(go())
