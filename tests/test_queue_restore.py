"""The queue survives a restart: saved in the database whenever it changes, restored on start."""

from __future__ import annotations

import asyncio

from mrs_tui.tui.screens.queue import QueueScreen
from tests import test_tui_player as player_tests
from tests.test_tui_player import SIZE, make_app, ready, wait_for

analysed_db = player_tests.analysed_db  # the same fixtures: an analysed library, copied per test
db = player_tests.db


def test_the_queue_comes_back_after_a_restart_in_order_with_why_and_position(db):
    async def first_run():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            ids = app.main.library.visible_track_ids
            for _ in range(4):  # z queues the highlighted track; j moves down
                await pilot.press("z", "j")
            await pilot.press("n")  # the first one plays
            await wait_for(pilot, lambda: player.started == [ids[0]])
            await pilot.press("2", "j", "j", "K")  # third entry one place up
            assert app.queue.track_ids() == [ids[0], ids[2], ids[1], ids[3]]
            await pilot.press("q")
        return ids

    ids = asyncio.run(first_run())

    async def second_run():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await wait_for(pilot, lambda: app.queue.entries)
            assert app.queue.track_ids() == [ids[0], ids[2], ids[1], ids[3]]
            assert app.queue.position == 0 and [e.why for e in app.queue.entries] == ["added by you"] * 4
            assert any("queue from last time is back: 3 up next" in n.message for n in app._notifications)
            await pilot.press("2")
            assert isinstance(app.screen, QueueScreen)
            assert app.screen.table.row_count == 4
            await pilot.press("n")  # playing goes on where it stopped
            await wait_for(pilot, lambda: player.started == [ids[2]])

    asyncio.run(second_run())


def test_the_queue_screen_marks_the_current_entry_playing_or_stopped(db):
    async def go():
        app, player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            ids = app.main.library.visible_track_ids
            app.queue.add(ids[:2])
            await pilot.press("n", "2")
            await wait_for(pilot, lambda: player.started == [ids[0]])
            screen = app.screen

            def marks() -> list[str]:
                return [str(screen.table.get_row_at(i)[1]) for i in range(screen.table.row_count)]

            await wait_for(pilot, lambda: marks() == ["▶", ""])
            player.run_out()
            await wait_for(pilot, lambda: player.started == [ids[0], ids[1]])
            await wait_for(pilot, lambda: marks() == ["·", "▶"])
            player.run_out()  # the last one ends: the queue stands on it, stopped
            await wait_for(pilot, lambda: marks() == ["·", "■"])

    asyncio.run(go())


def test_the_radio_comes_back_after_a_restart_and_stays_off_once_stopped(db):
    async def run(action):
        app, _player = make_app(db)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            result = await action(app, pilot)
            await pilot.press("q")
        return result

    async def start(app, pilot):
        ids = app.main.library.visible_track_ids
        await pilot.press("R")  # a radio from the highlighted track
        await wait_for(pilot, lambda: app.radio is not None and app.queue.entries)
        return ids[0], app.radio.seed_label

    seed, label = asyncio.run(run(start))

    async def restored(app, pilot):
        await wait_for(pilot, lambda: app.radio is not None)
        assert app.radio.seeds == [seed] and app.radio.seed_label == label
        assert any(f"the radio from {label} is back" in n.message for n in app._notifications)
        app.stop_radio()
        await wait_for(pilot, lambda: app.engine.store.saved_radio() is None)

    asyncio.run(run(restored))

    async def stays_off(app, pilot):
        await wait_for(pilot, lambda: app.queue.entries)  # the queue itself still comes back
        await pilot.pause(0.3)
        assert app.radio is None

    asyncio.run(run(stays_off))
