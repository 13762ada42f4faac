"""Keys remapped and the theme chosen in the config file: checked with the bad key named, then used."""

from __future__ import annotations

import asyncio

import pytest

from mrs_tui.cli import main
from mrs_tui.config import Settings
from mrs_tui.errors import UserError
from mrs_tui.tui.keymap import check_ui_settings
from tests import test_tui_player as player_tests
from tests.test_tui_player import SIZE, make_app, ready, wait_for

analysed_db = player_tests.analysed_db  # the same fixtures: an analysed library, copied per test
db = player_tests.db


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(keys={"lkie": "L"}), r"cfg.toml: keys: unknown action 'lkie' — actions: .*\blike\b"),
        (Settings(keys={"like": "ctrl+banana"}), r"keys: like = 'ctrl\+banana': 'ctrl\+banana' is not a key"),
        (Settings(keys={"like": "L,hyperx+q"}), r"'hyperx\+q' is not a key"),
        (
            Settings(theme="solarised"),
            r"theme = 'solarised' is not one of Textual's themes — use one of: .*solarized-light",
        ),
    ],
)
def test_a_bad_key_or_theme_is_one_line_naming_it(settings, expected):
    with pytest.raises(UserError, match=expected):
        check_ui_settings(settings, "cfg.toml")


def test_good_keys_become_the_keymap():
    keymap = check_ui_settings(Settings(keys={"like": "L", "quit": "ctrl+q, f10", "toggle_pause": "space"}))
    assert keymap == {"like": "L", "quit": "ctrl+q,f10", "toggle_pause": "space"}


def test_the_command_line_refuses_a_bad_key_before_the_app_opens(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text('[mrs-tui.keys]\nlike = "L"\nplya = "o"\n', encoding="utf-8")
    assert main(["--config", str(config), "--db", str(tmp_path / "lib.db")]) == 2
    assert f"{config}: keys: unknown action 'plya'" in capsys.readouterr().err


def test_remapped_keys_and_the_theme_are_used_in_the_app(db):
    async def go():
        app, _player = make_app(db, keys={"like": "L", "quit": "ctrl+q"}, theme="nord")
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            assert app.theme == "nord"
            store = app.engine.store
            await pilot.press("l")  # the old key does nothing now
            await pilot.pause()
            assert store.play_count(("like",)) == 0
            await pilot.press("L")
            await wait_for(pilot, lambda: store.play_count(("like",)) == 1)
            await pilot.press("q")  # no longer quits
            await pilot.pause()
            assert app.is_running
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: not app.is_running)

    asyncio.run(go())
