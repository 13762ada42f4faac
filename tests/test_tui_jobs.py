"""The jobs screen (key 4): running jobs with progress, an ETA that moves, cancel per job,
and unreadable files named in a notification."""

from __future__ import annotations

import asyncio
import threading

from mrs_tui.config import Settings
from mrs_tui.indexing import BackendProgress, IndexProgress
from mrs_tui.jobs import JobBoard
from mrs_tui.tui import messages as msg
from mrs_tui.tui.app import create_app
from mrs_tui.tui.screens.jobs import JobsScreen
from tests.conftest import make_library
from tests.test_jobs import FakeClock
from tests.test_tui_player import FakeDevice, wait_for

SIZE = (150, 45)


def screen_rows(screen: JobsScreen) -> dict[str, list[str]]:
    table = screen.table
    return {str(key.value): [str(cell) for cell in table.get_row(key)] for key in table.rows}


def test_the_watch_is_listed_cancelling_it_stops_it_and_the_next_scan_starts_it_again(tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno",), per_style=2, seconds=2.0, formats=(".flac",))

    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", folder=root, settings=Settings(backend="mfcc"), player=FakeDevice()
        )
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: getattr(app, "watch_ready", None) is not None and app.watch_ready.is_set())
            await wait_for(pilot, lambda: not app.indexing)
            await pilot.press("4")
            screen = app.screen
            assert isinstance(screen, JobsScreen)
            await wait_for(pilot, lambda: "watch" in screen_rows(screen))
            assert screen_rows(screen)["watch"][0] == f"Watching {root.resolve()}"
            await pilot.press("x")
            await wait_for(pilot, lambda: "watch" not in screen_rows(screen))
            await wait_for(pilot, lambda: not any(w.group == "watch" and not w.is_finished for w in app.workers))
            assert "no job is running" in str(screen.query_one("#jobs-title").render())
            assert any("i scans the folders and watches them again" in n.message for n in app._notifications)

            # The next scan starts the watch again (it used to stay off until a restart).
            await wait_for(pilot, lambda: app.stop_watch is None)
            await pilot.press("1", "i")
            await wait_for(pilot, lambda: any(w.group == "watch" and not w.is_finished for w in app.workers))
            await wait_for(pilot, lambda: app.watch_ready.is_set())

    asyncio.run(go())


def test_a_quiet_analysis_shows_a_growing_eta_then_stalled_and_cancels(tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=1, seconds=2.0, formats=(".flac",))

    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", settings=Settings(backend="mfcc"), player=FakeDevice(), index_on_start=False
        )
        clock = FakeClock()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.engine is not None)
            app.jobs = JobBoard(clock=clock)
            stopped = threading.Event()

            def analysis_that_goes_quiet():  # a real worker of the analysis group; the test reports for it
                with app._job("index") as cancel:
                    cancel.wait(60)
                stopped.set()

            def progress(done: int) -> IndexProgress:
                both = (BackendProgress("mfcc", done, 14, done), BackendProgress("musicnn", done // 2, 14, done))
                return IndexProgress(done, 14, 0, float(done), backends=both)

            app.run_worker(analysis_that_goes_quiet, thread=True, group="index", exit_on_error=False)
            await pilot.press("4")
            screen = app.screen
            for done in range(1, 11):  # a track a second
                clock.now += 1
                app.post_message(msg.IndexProgressed("mfcc", progress(done)))
                await pilot.pause()
            await wait_for(pilot, lambda: screen_rows(screen).get("index", ["", "", ""])[2] == "10/14")
            rows = screen_rows(screen)
            assert rows["index"][0] == "Analysing with mfcc, musicnn"
            assert rows["index"][3] == "ETA 0:04"
            assert rows["index/musicnn"][2] == "5/14"  # one row per backend
            etas, seconds = [], []
            for _ in range(3):
                clock.now += 20
                app.tick_jobs()
                await pilot.pause()
                etas.append(screen_rows(screen)["index"][3])
                seconds.append(app.jobs.jobs["index"].eta.seconds_left())
            assert etas[0] != "ETA 0:04" and "stalled" not in etas[0]
            assert "stalled 1:00" in etas[2]
            assert seconds[0] < seconds[1] < seconds[2]
            status_label = app.main.index_status.children[-1]
            assert "stalled 1:00" in str(status_label.render())  # the status line under the library too
            await pilot.press("x")
            await wait_for(pilot, stopped.is_set)
            await wait_for(pilot, lambda: not any(k.startswith("index") for k in screen_rows(screen)))

    asyncio.run(go())


def test_unreadable_files_are_named_in_a_notification(tmp_path):
    root = tmp_path / "music"
    made = make_library(root, styles=("techno",), per_style=1, seconds=2.0, formats=(".flac",), broken=True)

    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", folder=root, settings=Settings(backend="mfcc"), player=FakeDevice()
        )
        async with app.run_test(size=SIZE) as pilot:

            def named() -> str:
                return "\n".join(n.message for n in app._notifications if n.title in ("Cannot read", "Cannot analyse"))

            await wait_for(pilot, lambda: named() != "" and not app.indexing, timeout=90)
            text = named()
            assert any(path.name in text for path in made["broken"])
            assert "Traceback" not in text

    asyncio.run(go())


def test_training_and_an_import_are_listed_and_an_import_cannot_be_stopped_half_way(tmp_path):
    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", settings=Settings(backend="mfcc"), player=FakeDevice(), index_on_start=False
        )
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.engine is not None)
            release = threading.Event()
            stopped = threading.Event()

            def training():  # a real worker of the training group, reporting like one
                with app._job("train") as cancel:
                    app.post_message(msg.TrainProgressed("shallow", 3, 10, "epoch 3 of 10"))
                    cancel.wait(60)
                stopped.set()

            app.run_worker(training, thread=True, group="train", exit_on_error=False)
            app.run_worker(release.wait, thread=True, group="import", name="apply_import", exit_on_error=False)
            await pilot.press("4")
            screen = app.screen
            await wait_for(pilot, lambda: {"train", "import"} <= set(screen_rows(screen)))
            await wait_for(pilot, lambda: screen_rows(screen)["train"][2] == "3/10")
            rows = screen_rows(screen)
            assert rows["train"][0] == "Training shallow" and rows["train"][5] == "epoch 3 of 10"
            assert rows["import"][0] == "Import: writing the plays"
            keys = list(screen_rows(screen))
            screen.table.move_cursor(row=keys.index("import"))
            await pilot.press("x")
            assert any(n.message == "that job cannot be cancelled" for n in app._notifications)
            assert not release.is_set() and "import" in screen_rows(screen)
            screen.table.move_cursor(row=keys.index("train"))
            await pilot.press("x")
            await wait_for(pilot, stopped.is_set)
            await wait_for(pilot, lambda: "train" not in screen_rows(screen))
            release.set()
            await wait_for(pilot, lambda: "import" not in screen_rows(screen))

    asyncio.run(go())
