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


def test_changed_since_finds_files_written_or_moved_in_after_a_time(tmp_path):
    import os

    from mrs_tui.watch import changed_since

    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    old = root / "album" / "old.flac"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    outside = tmp_path / "elsewhere.flac"
    outside.write_bytes(b"y")
    os.utime(outside, (time.time() - 3600, time.time() - 3600))  # an old file, moved in later
    since = time.time()
    time.sleep(0.05)
    new = root / "album" / "new.flac"
    new.write_bytes(b"z")
    moved = root / "moved.flac"
    outside.rename(moved)
    (root / "notes.txt").write_text("not audio")
    assert changed_since([root], since) == {new, moved}


def test_several_folders_are_scanned_and_watched_and_a_file_arriving_before_the_watch_is_caught(tmp_path, monkeypatch):
    import mrs_tui.watch

    first, second = tmp_path / "music", tmp_path / "nas"
    make_library(first, styles=("techno",), per_style=2, seconds=2.0, formats=(".flac",))
    make_library(second, styles=("piano",), per_style=2, seconds=2.0, formats=(".flac",))
    real_watch = mrs_tui.watch.watch_folders
    watched: list[list] = []

    def watch_after_a_late_arrival(folders, on_change, stop, **options):
        # The first scan is over and the watch is not in place yet: nothing would report this file.
        tags = {"title": "Slipped In", "artist": "Hammer & Felt", "album": "Late LP"}
        write_track(second / "slipped.flac", synthesize(STYLES[2], 2.0, sr=FIXTURE_RATE, seed=3), FIXTURE_RATE, tags)
        watched.append(list(folders))
        return real_watch(folders, on_change, stop, **options)

    monkeypatch.setattr(mrs_tui.watch, "watch_folders", watch_after_a_late_arrival)

    async def go():
        app = create_app(
            db_path=tmp_path / "lib.db", folders=[first, second], settings=Settings(backend="mfcc"), player=FakeDevice()
        )
        async with app.run_test(size=(150, 45)) as pilot:

            def titles() -> set[str]:
                return {t.title for t in app.main.library.tracks.values()} if app.main is not None else set()

            await wait_for(pilot, lambda: "Slipped In" in titles(), timeout=120)
            assert len(titles()) == 5  # both folders, and the late file
            assert watched == [[first.resolve(), second.resolve()]]
            await wait_for(pilot, lambda: app.watch_ready.is_set())
            tags = {"title": "Copied Later", "artist": "Four Floors", "album": "Techno LP"}
            write_track(first / "later.flac", synthesize(STYLES[1], 2.0, sr=FIXTURE_RATE, seed=9), FIXTURE_RATE, tags)
            await wait_for(pilot, lambda: "Copied Later" in titles(), timeout=120)

    asyncio.run(go())
