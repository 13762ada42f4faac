"""The compare screen, the explain panel, blind A/B and the Evaluate chart, driven through the Pilot."""

from __future__ import annotations

import asyncio
import shutil
import time

import numpy as np
import pytest

from backends import embedding_version
from mrs_tui.comparison import jaccard_at_k, rank_biased_overlap
from mrs_tui.config import Settings
from mrs_tui.demo import write_demo_history
from mrs_tui.engine import Engine
from mrs_tui.evaluation.datasets import history_dataset
from mrs_tui.evaluation.runner import EvalSettings, run_grid, save_run
from mrs_tui.store import EmbeddingRow, Store
from mrs_tui.tui import messages as msg
from mrs_tui.tui.app import create_app
from mrs_tui.tui.widgets.library import TrackList
from tests.conftest import make_library
from tests.test_tui import RecordingPlayer, messages_of, wait_for

SIZE = (160, 50)
FIXED_NOW = 1_790_000_000.0  # the generated history ends a day before this: stable dates in snapshots


def build_library(root):
    """Real audio (4 styles x 3), analysed with mfcc; a second backend's vectors made from them with
    noise and MusiCNN-style tags; the demo's generated history; one stored evaluation of knn."""
    make_library(root / "music", styles=("techno", "piano", "chiptune", "folk"), per_style=3, seconds=3.0)
    db = root / "lib.db"
    store = Store.open(db)
    engine = Engine(store, Settings(backend="mfcc"))
    engine.scan(root / "music")
    engine.index(["mfcc"])
    ids, matrix, _ = store.embedding_matrix("mfcc", engine.version("mfcc"))
    rng = np.random.default_rng(0)
    noisy = matrix + rng.normal(0, matrix.std() * 0.8, matrix.shape).astype(np.float32)
    tracks = {t.id: t for t in store.tracks()}
    store.put_embeddings(
        EmbeddingRow(
            int(t),
            "musicnn",
            embedding_version("musicnn"),
            v,
            extras={"tags": [[tracks[int(t)].genre.lower(), 0.8], ["instrumental", 0.5]]},
        )
        for t, v in zip(ids, noisy, strict=True)
    )
    write_demo_history(store, seed=1, weeks=9, now=FIXED_NOW)
    run = run_grid(
        history_dataset(store, ["mfcc", "musicnn"], engine.version), EvalSettings(ks=(10,), recommenders=["knn"])
    )
    run.created_at = FIXED_NOW
    for cell in run.cells:  # timings vary from machine to machine; snapshots must not
        cell.fit_seconds = cell.eval_seconds = 0.0
    save_run(store, run)
    store.close()
    return db


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("compare-lib"))


@pytest.fixture
def db(built, tmp_path):
    copy = tmp_path / "lib.db"
    shutil.copy(built, copy)
    return copy


def open_app(db, player=None):
    return create_app(
        db_path=db, settings=Settings(backend="mfcc"), player=player or RecordingPlayer(), index_on_start=False
    )


async def open_compare(app, pilot, log):
    from mrs_tui.tui.screens.compare import CompareScreen

    await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
    library = app.screen.query_one(TrackList)
    await wait_for(pilot, lambda: library.row_count > 0)
    library.focus()
    await pilot.press("down")
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
    await pilot.pause(0.1)
    return app.screen


def column_titles(screen, index):
    from mrs_tui.tui.screens.compare import ColumnTable

    table = screen.query_one(f"#column-{index}", ColumnTable)
    return [str(table.get_row_at(r)[2]) for r in range(table.row_count)], table


def test_one_column_per_backend_with_shared_marks_and_overlaps_as_computed(db):
    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            screen = await open_compare(app, pilot, log)
            result = screen.comparison
            assert result.labels == ["mfcc", "musicnn"] and result.fixed == "knn"
            engine = app.engine
            seed = result.seed.track
            for index, column in enumerate(result.columns):
                direct = engine.suggest(seed, k=10, backend=column.backend, recommender="knn")
                titles, table = column_titles(screen, index)
                assert titles == [s.track.display_title for s in direct.items]
                # A shared track shows its mark in this column too.
                for row, item in enumerate(direct.items):
                    assert str(table.get_row_at(row)[1]) == result.shared.get(item.track.id, "")
            a, b = (c.track_ids for c in result.columns)
            assert set(result.shared) == set(a) & set(b) and result.shared
            overlap = str(screen.query_one("#overlap").render())
            assert f"{jaccard_at_k(a, b, 10):.2f}" in overlap and f"{rank_biased_overlap(a, b, 10):.2f}" in overlap
            chart = str(screen.query_one("#compare-chart").render())
            assert "mfcc hot" in chart and "├" in chart and "evaluation #1" in chart
            assert "hot:" in str(screen.query_one("#paired").render())

    asyncio.run(scenario())


def test_playing_liking_and_explaining_a_cell(db):
    from mrs_tui.tui.screens.explain import ExplainScreen

    async def scenario():
        log = []
        player = RecordingPlayer()
        app = open_app(db, player)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            screen = await open_compare(app, pilot, log)
            await pilot.press("right")  # the second column
            await pilot.press("down")
            cell = screen.selected
            assert cell.track.id == screen.comparison.columns[1].track_ids[1]
            before = app.engine.store.last_play_id()
            await pilot.press("p")
            await wait_for(pilot, lambda: player.played)
            assert player.played[0][0] == cell.track.id
            store = Store.open(db)
            await wait_for(pilot, lambda: store.last_play_id() > before)
            assert store.plays(since_id=before)[0].track_id == cell.track.id
            await pilot.press("l")
            await wait_for(pilot, lambda: store.plays(since_id=before)[-1].event == "like")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
            text = str(app.screen.query_one("#explain-text").render())
            why = app.screen.explanation
            assert why.backend == "musicnn" and why.mode in ("hot", "cold")
            assert ("hot: learned from your listening" in text) or ("cold: by its audio only" in text)
            assert "nearest of what you played:" in text and "MusiCNN hears:" in text
            store.close()

    asyncio.run(scenario())


def test_enter_on_a_suggestion_explains_it_in_every_list_and_p_still_plays(db):
    from mrs_tui.tui.screens.compare import CompareScreen
    from mrs_tui.tui.screens.explain import ExplainScreen

    async def scenario():
        log = []
        player = RecordingPlayer()
        app = open_app(db, player)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
            main = app.main
            await wait_for(pilot, lambda: main.nextup.table.row_count > 0)
            table = main.nextup.table
            table.focus()
            await pilot.press("down")
            wanted = table.selected.track.id
            await pilot.press("enter")  # the main screen's "next up" list
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
            assert app.screen.track_id == wanted
            assert not player.played  # enter explains; it no longer plays
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is main)
            await pilot.press("p")
            await wait_for(pilot, lambda: player.played)
            assert player.played[0][0] == wanted

            main.library.focus()
            await pilot.press("v")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
            screen = app.screen
            await pilot.press("right", "down")
            cell = screen.selected
            await pilot.press("enter")  # a compare column
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
            assert app.screen.track_id == cell.track.id
            assert app.screen.explanation.backend == screen.comparison.columns[1].backend
            # With a column focused, k still cycles K (the lists leave letter keys to the screen).
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
            await pilot.press("k")
            await wait_for(pilot, lambda: screen.comparison.k == 20)
            assert "top 20" in str(screen.query_one("#compare-title").render())

    asyncio.run(scenario())


def test_the_explain_panel_names_the_diversity_rules_that_let_a_radio_track_through(db):
    from mrs_tui.tui.screens.explain import ExplainScreen
    from mrs_tui.tui.screens.queue import QueueScreen

    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
            library = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: library.row_count > 0)
            library.focus()
            await pilot.press("R")  # radio from the highlighted track: the queue fills within the rules
            await wait_for(pilot, lambda: len(app.queue.upcoming) > 0)
            await pilot.press("2")
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen))
            queue = app.screen
            queue.table.move_cursor(row=len(app.queue.entries) - 1)
            entry = app.queue.entries[-1]
            assert entry.source == "radio" and entry.rule
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
            text = str(app.screen.query_one("#explain-text").render())
            assert app.screen.track_id == entry.track_id
            assert f"in the queue: {entry.why}" in text
            assert f"diversity rules that let it through: {entry.rule}" in text
            # The same panel opened from the main screen finds the queued entry by itself.
            await pilot.press("escape")
            await pilot.press("1")
            await wait_for(pilot, lambda: app.screen is app.main)
            app.push_screen(ExplainScreen(app.engine, entry.track_id))
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen) and app.screen.explanation is not None)
            assert app.screen.explanation.admitted_by == entry.rule

    asyncio.run(scenario())


def test_a_playlist_the_queue_or_the_session_can_seed_the_comparison_in_the_app(db):
    from mrs_tui.comparison import ComparisonSeed, compare
    from mrs_tui.tui.screens.compare import SeedPicker

    store = Store.open(db)
    ids = [t.id for t in store.tracks()]
    store.save_playlist("evening", ids[:3])
    store.close()

    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            screen = await open_compare(app, pilot, log)
            app.queue.add(ids[3:5])
            picks = {}
            for wanted in ("playlist evening", "the queue", "this session"):
                await pilot.press("s")
                await wait_for(pilot, lambda: isinstance(app.screen, SeedPicker))
                picker = app.screen
                index = next(i for i, label in enumerate(picker.labels) if label.startswith(wanted))
                before = screen.comparison
                picker.query_one("OptionList").highlighted = index
                await pilot.press("enter")
                await wait_for(pilot, lambda b=before: app.screen is screen and screen.comparison is not b)
                picks[wanted] = screen.seed
                title = str(screen.query_one("#compare-title").render())
                assert title.startswith(screen.seed.describe(app.engine.store))
                direct = compare(app.engine, screen.seed, recommenders=[app.engine.recommender])
                assert [c.track_ids for c in screen.comparison.columns] == [c.track_ids for c in direct.columns]
                shown, _ = column_titles(screen, 0)
                assert shown == [s.track.display_title for s in direct.columns[0].result.items]
            assert picks["playlist evening"] == ComparisonSeed(tracks=tuple(ids[:3]))
            assert picks["the queue"] == ComparisonSeed(tracks=tuple(ids[3:5]))
            assert picks["this session"] == ComparisonSeed()

    asyncio.run(scenario())


def test_axis_switch_shows_recommenders_on_one_backend(db):
    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            screen = await open_compare(app, pilot, log)
            first = screen.comparison
            await pilot.press("x")
            await wait_for(pilot, lambda: screen.comparison is not first)
            result = screen.comparison
            assert result.axis == "recommenders" and result.fixed == "mfcc"
            assert {"knn", "bert4rec", "popular", "random"} <= set(result.labels)
            assert len(result.columns) > 4  # four are visible, the rest scroll in
            await wait_for(pilot, lambda: len(screen.query(".column.-narrow")) == len(result.columns))
            untrained = result.labels.index("bert4rec")
            _, table = column_titles(screen, untrained)
            assert "not trained for mfcc" in str(table.get_row_at(0)[2])
            await pilot.press("x")
            await wait_for(pilot, lambda: screen.comparison.axis == "backends")
            # Any subset of the analysed backends.
            from mrs_tui.tui.screens.prompts import ChecklistPrompt

            shown = screen.comparison
            await pilot.press("B")
            await wait_for(pilot, lambda: isinstance(app.screen, ChecklistPrompt))
            app.screen.query_one("#prompt-list").deselect("mfcc")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.comparison is not shown)
            assert screen.comparison.labels == ["musicnn"]

    asyncio.run(scenario())


def test_blind_ab_stores_the_choice_reveals_the_labels_and_tallies(db):
    from mrs_tui.tui.screens.ab import BlindScreen

    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await open_compare(app, pilot, log)
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BlindScreen) and app.screen.round is not None)
            blind = app.screen
            assert "mfcc" not in str(blind.query_one("#ab-left-label").render())
            chosen = []
            for key in ("1", "2", "1"):
                await wait_for(pilot, lambda: blind.round is not None and not blind.decided)
                round_ = blind.round
                chosen.append(round_.left.backend if key == "1" else round_.right.backend)
                await pilot.press(key)
                await wait_for(pilot, lambda: "left was" in str(blind.query_one("#ab-result").render()))
                assert round_.pair_name(round_.left) in str(blind.query_one("#ab-left-label").render())
                blind.round = None
                await pilot.press("n")
            store = Store.open(db)
            (tally,) = store.ab_tallies()
            assert (tally.a, tally.b) == ("mfcc/knn", "musicnn/knn")
            assert tally.a_wins == chosen.count("mfcc") and tally.b_wins == chosen.count("musicnn")
            store.close()

    asyncio.run(scenario())


def test_evaluate_screen_charts_the_grid_names_the_winner_and_takes_settings_in_the_app(db):
    from mrs_tui.tui.screens.evaluate import EvaluateScreen
    from mrs_tui.tui.screens.prompts import ChecklistPrompt, TextPrompt

    async def scenario():
        log = []
        app = open_app(db)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.shown is not None)
            screen = app.screen
            chart = str(screen.query_one("#eval-chart").render())
            assert "hot knn on mfcc" in chart and "cold knn on musicnn" in chart and "├" in chart
            assert "hot popular" in chart and "test date" in chart
            winner = str(screen.query_one("#eval-winner").render())
            assert winner.startswith("on your history: knn on") and "for hot" in winner
            # The test date, the backends and the recommenders are set here, not on a command line.
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
            first = screen.shown.split["test_date"]
            await pilot.press(*"2000-01-01", "enter")
            assert screen.test_date == "2000-01-01"
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
            app.screen.query_one("#prompt-input").value = first
            await pilot.press("enter")
            await pilot.press("R")
            await wait_for(pilot, lambda: isinstance(app.screen, ChecklistPrompt))
            checklist = app.screen.query_one("#prompt-list")
            checklist.deselect_all()
            checklist.select("knn")
            await pilot.press("enter")
            assert screen.recommenders == ["knn"]
            await pilot.press("B")
            await wait_for(pilot, lambda: isinstance(app.screen, ChecklistPrompt))
            app.screen.query_one("#prompt-list").deselect("musicnn")
            await pilot.press("enter")
            assert screen.chosen_backends == ["mfcc"]
            settings = str(screen.query_one("#eval-settings").render())
            assert f"test date {first}" in settings and "backends mfcc (B)" in settings
            before = screen.shown.id
            await pilot.press("n")
            await wait_for(pilot, lambda: screen.shown is not None and screen.shown.id != before, timeout=120)
            run = screen.shown
            assert run.split["test_date"] == first and run.settings["backends"] == ["mfcc"]
            # the recommenders chosen (knn) and the baselines every grid carries (elsa: collaborative only)
            assert {c.recommender for c in run.cells} == {"knn", "popular", "random", "elsa"}
            # u serves each mode with the winner of the run on screen; the main list says so.
            await pilot.press("u")
            await wait_for(pilot, lambda: app.engine.served_pairs())
            served = app.engine.served_pairs()
            assert {p.run_id for p in served.values()} == {run.id}
            # The header names the pair serving each mode and the run they won, on every screen.
            day = time.strftime("%Y-%m-%d", time.gmtime(run.created_at))
            await wait_for(pilot, lambda: f"evaluation #{run.id}, {day}" in app.sub_title)
            hot = served["hot"]
            assert f"hot: {hot.recommender} on {hot.backend}" in app.sub_title
            if "cold" in served:
                assert f"new files: {served['cold'].recommender} on {served['cold'].backend}" in app.sub_title
            header = app.screen.query_one("HeaderTitle")
            await wait_for(pilot, lambda: f"evaluation #{run.id}" in str(header.render()))

    asyncio.run(scenario())
