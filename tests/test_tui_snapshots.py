"""What the screens look like at 80x24 and 160x50 (pytest-textual-snapshot; Textual is pinned).

Update after an intended change of the look: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from tests.test_tui_player import analysed_db, db, make_app, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _ready(app, queue: bool):
    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: app.engine is not None and app.main is not None and app.main.library.tracks)
        await wait_for(pilot, lambda: app.main.nextup.table.row_count > 0)
        if queue:
            ids = app.main.library.visible_track_ids
            app.queue.add(ids[:5], why="added by you")
            await pilot.press("2")
            await pilot.pause(0.2)
        app.screen.set_focus(None)  # no blinking cursor, no focus ring that depends on timing
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_queue_screen_snapshot(db, snap_compare, size):  # noqa: F811
    app, _player = make_app(db)
    assert snap_compare(app, terminal_size=size, run_before=_ready(app, queue=True))


def test_main_screen_snapshot_at_80x24(db, snap_compare):  # noqa: F811
    app, _player = make_app(db)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_ready(app, queue=False))


def test_playlists_screen_snapshot_at_80x24(db, snap_compare):  # noqa: F811
    from mrs_tui.store import Store

    with Store.open(db) as store:
        ids = [t.id for t in store.tracks()]
        store.save_playlist("dinner", ids[:4])
        store.save_playlist("a long evening of quiet piano and chiptune", ids[4:9])
    app, _player = make_app(db)

    async def run_before(pilot) -> None:
        await _ready(app, queue=False)(pilot)
        await pilot.press("5")
        await wait_for(pilot, lambda: app.screen.names.row_count == 2 and app.screen.tracks.row_count > 0)
        app.screen.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_diversity_settings_snapshot_at_80x24(db, snap_compare):  # noqa: F811
    from pathlib import Path

    app, _player = make_app(db)
    app.settings.source = Path("config.toml")  # the form says where it saves: the same words every run

    async def run_before(pilot) -> None:
        await _ready(app, queue=False)(pilot)
        await pilot.press("o")
        await wait_for(pilot, lambda: app.screen.query("#artist_cap"))
        app.screen.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
