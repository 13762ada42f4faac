"""Diversity rules changed in the app (key o): checked, applied to the running radio, saved."""

from __future__ import annotations

import asyncio

from mrs_tui.config import Settings
from mrs_tui.tui.screens.diversity import DiversityScreen
from tests import test_tui_player as player_tests
from tests.test_tui_player import SIZE, make_app, ready, wait_for

analysed_db = player_tests.analysed_db  # the same fixtures: an analysed library, copied per test
db = player_tests.db


async def set_field(pilot, screen, name: str, text: str) -> None:
    field = screen.query_one(f"#{name}")
    field.focus()
    field.value = ""
    await pilot.press(*text)


def test_changed_rules_reach_the_running_radio_and_the_config_file(db, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("# my settings\n[mrs-tui]\nsuggestions = 12\n", encoding="utf-8")

    async def go():
        app, player = make_app(db, radio_batch=3, radio_refill_below=2, diversity_window=2, diversity_artist_cap=2)
        app.settings.source = config
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await pilot.press("R")
            await wait_for(pilot, lambda: player.started)
            await pilot.press("o")
            screen = app.screen
            assert isinstance(screen, DiversityScreen)
            # a bad value: named on the form, nothing changes
            await set_field(pilot, screen, "artist_cap", "0")
            await pilot.press("enter")
            error = str(screen.query_one("#diversity-error").render())
            assert "diversity_artist_cap = 0 must be at least 1" in error
            assert app.screen is screen and app.radio.rules.artist_cap == 2
            # one track per artist within any three
            await set_field(pilot, screen, "artist_cap", "1")
            await set_field(pilot, screen, "window", "3")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "diversity_window = 3" in config.read_text(encoding="utf-8"))
            text = config.read_text(encoding="utf-8")
            assert (
                text.startswith("# my settings\n[mrs-tui]\nsuggestions = 12\n") and "diversity_artist_cap = 1" in text
            )
            assert Settings.load(config, environ={}).diversity_window == 3
            assert (app.radio.rules.artist_cap, app.radio.rules.window) == (1, 3)
            assert app.settings.diversity_artist_cap == 1
            # what the radio queues from now on keeps to them
            queued_before = len(app.queue.entries)
            for _ in range(3):
                before = len(player.started)
                player.run_out()
                await wait_for(pilot, lambda before=before: len(player.started) == before + 1)
            added = app.queue.entries[queued_before:]
            artists = [app.track_info(e.track_id).artist for e in added]
            assert len(artists) >= 3
            assert all(len(set(artists[i : i + 3])) == len(artists[i : i + 3]) for i in range(len(artists) - 2))
            assert all("let through: artist 1/1 in 3" in e.explanation() for e in added)  # the new rule, shown

    asyncio.run(go())
