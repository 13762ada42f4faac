"""Snapshots of the compare screen, the explain panel and the Evaluate chart at 80x24 and 160x50."""

from __future__ import annotations

import time

import pytest

from mrs_tui.tui import messages as msg
from tests.test_tui import messages_of, wait_for
from tests.test_tui_compare import build_library, open_app

SIZES = [(80, 24), (160, 50)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("snapshot-lib"))


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def app_with_log(built, tmp_path):
    import shutil

    db = tmp_path / "lib.db"
    shutil.copy(built, db)
    log: list = []
    app = open_app(db)
    original = app.post_message

    def recording(message):
        log.append(message)
        return original(message)

    app.post_message = recording
    return app, log


async def to_compare(pilot, app, log):
    from mrs_tui.tui.screens.compare import CompareScreen
    from mrs_tui.tui.widgets.library import TrackList

    await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
    library = app.screen.query_one(TrackList)
    await wait_for(pilot, lambda: library.row_count > 0)
    library.focus()
    await pilot.press("down")
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare, built, tmp_path, size):
    app, log = app_with_log(built, tmp_path)

    async def run_before(pilot):
        await to_compare(pilot, app, log)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_explain_panel(snap_compare, built, tmp_path, size):
    from mrs_tui.tui.screens.explain import ExplainScreen

    app, log = app_with_log(built, tmp_path)

    async def run_before(pilot):
        await to_compare(pilot, app, log)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_evaluate_chart(snap_compare, built, tmp_path, size):
    from mrs_tui.tui.screens.evaluate import EvaluateScreen

    app, log = app_with_log(built, tmp_path)

    async def run_before(pilot):
        await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.shown is not None)
        if size[0] < 100:
            await pilot.press("g")  # the chart alone: a small terminal has no room for both
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
