"""The app driven like a person would, through Textual's Pilot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import backends
from backends.base import Backend, BackendSpec
from mrs_tui.config import Settings
from mrs_tui.player import PlaybackEnded, Player
from mrs_tui.store import Store
from mrs_tui.tui import messages as msg
from mrs_tui.tui.app import create_app
from mrs_tui.tui.widgets.library import TrackList
from mrs_tui.tui.widgets.suggestions import SuggestionTable
from tests.conftest import make_library

SIZE = (150, 45)


class RecordingPlayer(Player):
    """Stands in for PortAudio (covered by test_playback.py): keeps what it was asked to play."""

    def __init__(self) -> None:
        super().__init__()
        self.played: list[tuple[int | None, int, int]] = []
        self._now_playing: int | None = None

    def check(self) -> str | None:
        return None

    def play(self, samples: np.ndarray, sample_rate: int, *, track_id: int | None = None) -> None:
        self.stop()
        self.played.append((track_id, len(samples), sample_rate))
        self._now_playing = track_id
        self._buffer, self._rate, self._frame = samples, sample_rate, 0

    @property
    def playing(self) -> bool:
        return self._now_playing is not None

    @property
    def track_id(self) -> int | None:
        return self._now_playing

    def stop(self) -> PlaybackEnded | None:
        if self._now_playing is None:
            return None
        ended = PlaybackEnded(self._now_playing, 0.1 * self.length, self.length, finished=False)
        self._now_playing = None
        if self.on_ended:
            self.on_ended(ended)
        return ended


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


@pytest.fixture
def music(tmp_path):
    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano", "chiptune"), per_style=3, seconds=3.0, broken=True)
    return root


def messages_of(kind, log):
    return [m for m in log if isinstance(m, kind)]


def test_opens_indexes_suggests_and_records_a_play(tmp_path, music):
    async def scenario():
        log = []
        player = RecordingPlayer()
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=player)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 13)
            statuses = {table.status_text(table.tracks[t]).plain for t in table.visible_track_ids}
            assert "new" in statuses and any(s.startswith("failed:") for s in statuses)

            # Highlighting a track shows next-up suggestions from KNN.
            table.focus()
            await pilot.press("down")
            assert table.selected_track_id == table.visible_track_ids[1]
            suggestions = app.screen.query_one(SuggestionTable)
            await wait_for(pilot, lambda: suggestions.row_count > 0)
            seed = app.screen.selected_track_id
            assert seed not in {s.track.id for s in suggestions.items}
            assert all(s.new for s in suggestions.items)

            # p plays a preview: the player gets the audio and the history gets a row.
            await pilot.press("p")
            await wait_for(pilot, lambda: player.played)
            store = Store.open(tmp_path / "lib.db")
            await wait_for(pilot, lambda: store.play_count() == 1)
            assert store.plays()[0].track_id == seed == player.played[0][0]
            # s stops it before half: a skip.
            await pilot.press("s")
            await wait_for(pilot, lambda: len(store.plays()) == 2)
            assert [p.event for p in store.plays()] == ["play", "skip"]
            # l likes the highlighted track; suggestions are recomputed at once.
            before = len(messages_of(msg.SuggestionsReady, log))
            await pilot.press("l")
            await wait_for(pilot, lambda: len(messages_of(msg.SuggestionsReady, log)) > before)
            assert store.plays()[-1].event == "like"

    asyncio.run(scenario())


def test_search_filters_the_library(tmp_path, music):
    async def scenario():
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=RecordingPlayer(), index_on_start=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            app.start_indexing()
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 13)
            await pilot.press("slash")
            await pilot.press(*"hammer")
            await wait_for(pilot, lambda: table.row_count == 3)
            assert {table.tracks[t].artist for t in table.visible_track_ids} == {"Hammer & Felt"}
            await pilot.press("escape")
            await wait_for(pilot, lambda: table.row_count == 13)

    asyncio.run(scenario())


SLOW_SPEC = BackendSpec(
    name="slowtest",
    display_name="slow test backend",
    target="tests.test_tui:SlowBackend",
    sample_rate=8000,
    clip_seconds=1.0,
    dim=4,
    version="1",
    description="a deliberately slow analysis, to cancel half way",
)


class SlowBackend(Backend):
    spec = SLOW_SPEC
    batch_size = 1

    def load(self, weights=None):
        self.loaded = True
        return self

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        time.sleep(0.3)
        return np.stack([[w.mean(), w.std(), np.abs(w).max(), len(w)] for w in waveforms]).astype(np.float32)


def test_cancel_indexing_then_resume_where_it_stopped(tmp_path, music, monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "slowtest", SLOW_SPEC)
    settings = Settings(backend="slowtest")

    async def first_run():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", folder=music, settings=settings, player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: any(m.progress.done >= 3 for m in messages_of(msg.IndexProgressed, log)))
            await pilot.press("c")
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            return messages_of(msg.IndexFinished, log)[0].report

    report = asyncio.run(first_run())
    assert report.cancelled
    store = Store.open(tmp_path / "lib.db")
    done_first = store.embedded_track_ids("slowtest", "1")
    assert 0 < len(done_first) < 10  # 9 good tracks + the truncated file

    async def second_run():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", folder=music, settings=settings, player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            return messages_of(msg.IndexFinished, log)[0].report

    resumed = asyncio.run(second_run())
    assert not resumed.cancelled
    assert resumed.total == 10 - len(done_first)  # only what the first run had not stored
    assert len(store.embedded_track_ids("slowtest", "1")) == 9


def test_previews_off_is_said_once_and_the_app_keeps_working(tmp_path, music):
    class NoDevice(RecordingPlayer):
        def check(self):
            self.unavailable_reason = "previews are off: no audio output device (test)"
            return self.unavailable_reason

    async def scenario():
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=NoDevice())
        notes = []
        app.notify = lambda text, **kw: notes.append(text)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 13)
            table.focus()
            await pilot.press("p")
            await pilot.press("down", "p")
            assert table.tracks[table.selected_track_id].status == "ok"
            await pilot.pause(0.2)
            assert sum("previews are off" in n for n in notes) == 1
            assert Store.open(tmp_path / "lib.db").play_count() == 0

    asyncio.run(scenario())


def test_compare_screen_shows_a_column_per_analysed_backend(tmp_path, music, monkeypatch):
    from mrs_tui.engine import Engine
    from mrs_tui.tui.screens.compare import ColumnTable, CompareScreen
    from tests.test_indexing import ENERGY_SPEC

    monkeypatch.setitem(backends.REGISTRY, "energy", ENERGY_SPEC)
    store = Store.open(tmp_path / "lib.db")
    engine = Engine(store)
    engine.scan(music)
    engine.index(["mfcc", "energy"])

    async def scenario():
        app = create_app(db_path=tmp_path / "lib.db", player=RecordingPlayer())
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 13)
            table.focus()
            seed = table.selected_track_id
            await pilot.press("v")
            await wait_for(
                pilot, lambda: isinstance(app.screen, CompareScreen) and len(app.screen.query(".column")) == 2
            )
            columns = app.screen.query(".column")
            titles = [str(column.children[0].render()) for column in columns]
            rows = [
                [
                    str(column.query_one(ColumnTable).get_row_at(i)[2])
                    for i in range(column.query_one(ColumnTable).row_count)
                ]
                for column in columns
            ]
            return seed, titles, rows

    seed, titles, rows = asyncio.run(scenario())
    assert [t.split(" ")[0] for t in titles] == ["mfcc", "energy"]  # registry order; only the two analysed
    for backend, shown in zip(("mfcc", "energy"), rows, strict=True):
        expected = engine.suggest(seed, k=10, backend=backend, recommender="knn")
        assert shown == [item.track.display_title for item in expected.items] and len(shown) == 8


def test_analyse_only_the_visible_list_or_the_highlighted_track(tmp_path, music, monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "slowtest", SLOW_SPEC)
    from mrs_tui.library import scan

    store = Store.open(tmp_path / "lib.db")
    scan(store, music)
    store.close()

    async def scenario():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", settings=Settings(backend="slowtest"), player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 13)
            await pilot.press("slash", *"hammer", "enter")
            await wait_for(pilot, lambda: table.row_count == 3)
            await pilot.press("A")
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            assert messages_of(msg.IndexFinished, log)[0].report.total == 3
            await pilot.press("escape")
            await wait_for(pilot, lambda: table.row_count == 13)
            table.focus()
            await pilot.press("home", "a")  # the first track: Bit Sprites, not among the three above
            await wait_for(pilot, lambda: len(messages_of(msg.IndexFinished, log)) == 2)
            assert messages_of(msg.IndexFinished, log)[1].report.total == 1

    asyncio.run(scenario())
    assert len(Store.open(tmp_path / "lib.db").embedded_track_ids("slowtest", "1")) == 4
