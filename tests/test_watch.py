"""Watched library folders: a file copied in while the app runs is analysed and suggested as new."""

from __future__ import annotations

import asyncio
import threading
import time

from mrs_tui.config import Settings
from mrs_tui.demo import STYLES, synthesize, write_track
from mrs_tui.tui.app import create_app
from mrs_tui.watch import watch_folders
from tests.conftest import FIXTURE_RATE, make_library
from tests.test_tui_player import FakeDevice, wait_for


def test_watch_reports_audio_files_and_ignores_the_rest(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    batches: list[set] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch_folders, args=([root], batches.append, stop), kwargs={"debounce_ms": 100})
    thread.start()
    try:
        time.sleep(0.5)
        (root / "cover.jpg").write_bytes(b"jpeg")
        (root / ".hidden.flac").write_bytes(b"x")
        track = write_track(root / "new.flac", synthesize(STYLES[0], 1.0, sr=FIXTURE_RATE, seed=1), FIXTURE_RATE)
        deadline = time.time() + 20
        while not batches and time.time() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert set().union(*batches) == {track}


def test_a_new_file_appears_as_a_new_suggestion_without_a_key_press(tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=2, seconds=2.0, formats=(".flac",))

    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", folder=root, settings=Settings(backend="mfcc"), player=FakeDevice()
        )
        async with app.run_test(size=(150, 45)) as pilot:
            await wait_for(pilot, lambda: app.main is not None and len(app.main.library.tracks) == 4)

            def analysed() -> int:
                return len(
                    app.engine.store.embedded_track_ids("mfcc", app.engine.version("mfcc"), include_failed=False)
                )

            await wait_for(pilot, lambda: not app.indexing and analysed() == 4)
            await wait_for(pilot, lambda: getattr(app, "watch_ready", None) is not None and app.watch_ready.is_set())
            tags = {"title": "Arrived Later", "artist": "Four Floors", "album": "Techno LP"}
            write_track(root / "later.flac", synthesize(STYLES[1], 2.0, sr=FIXTURE_RATE, seed=9), FIXTURE_RATE, tags)
            await wait_for(pilot, lambda: analysed() == 5, timeout=90)
            new = next(t for t in app.main.library.tracks.values() if t.title == "Arrived Later")
            await pilot.press("f")  # the new-files view lists it among the cold tracks
            await wait_for(pilot, lambda: new.id in [s.track.id for s in app.main.nextup.table.items])
            assert next(s for s in app.main.nextup.table.items if s.track.id == new.id).new

    asyncio.run(go())
