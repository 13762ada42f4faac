"""Training and evaluation from the app: background work with progress, results on screen."""

from __future__ import annotations

import asyncio

import pytest

from mrs_tui.config import Settings
from mrs_tui.evaluation.synthetic import generate, write_history
from mrs_tui.store import Store
from mrs_tui.tui import messages as msg
from mrs_tui.tui.app import create_app
from tests.test_tui import SIZE, RecordingPlayer, messages_of, wait_for


@pytest.fixture
def history_db(tmp_path):
    store = Store.open(tmp_path / "lib.db")
    data = generate(n_users=1, n_items=120, n_plays=500, days=120, seed=3)
    data.vectors = {"mfcc": data.vectors["good"]}  # stored as the mfcc backend's vectors
    write_history(store, data, versions={"mfcc": "1"})
    store.close()
    return tmp_path / "lib.db"


@pytest.mark.slow
def test_t_trains_the_selected_recommender_in_the_background(history_db):
    async def scenario():
        log = []
        app = create_app(db_path=history_db, settings=Settings(recommender="hybrid"), player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: app.engine is not None and messages_of(msg.EngineReady, log))
            await pilot.press("t")
            await wait_for(pilot, lambda: messages_of(msg.TrainFinished, log), timeout=300)
            finished = messages_of(msg.TrainFinished, log)[0]
            assert finished.trained and finished.recommender == "hybrid"
            assert messages_of(msg.TrainProgressed, log)
            info = app.engine.model_info("hybrid", "mfcc")
            assert info.trained_at is not None and info.n_plays > 0
            # The trained model now answers suggestions.
            before = len(messages_of(msg.SuggestionsReady, log))
            app.screen.request_suggestions()
            await wait_for(pilot, lambda: len(messages_of(msg.SuggestionsReady, log)) > before)
            assert messages_of(msg.SuggestionsReady, log)[-1].result.recommender == "hybrid"

    asyncio.run(scenario())


def test_an_untrained_recommender_falls_back_to_knn_and_says_so(history_db):
    async def scenario():
        log = []
        app = create_app(db_path=history_db, settings=Settings(recommender="bert4rec"), player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.SuggestionsReady, log))
            result = messages_of(msg.SuggestionsReady, log)[-1].result
            assert result.recommender == "knn" and "not trained" in result.note and result.items

    asyncio.run(scenario())


@pytest.mark.slow
def test_evaluate_screen_runs_the_grid_and_keeps_the_run(history_db):
    from textual.widgets import DataTable

    from mrs_tui.tui.screens.evaluate import EvalFinished, EvaluateScreen

    async def scenario():
        log = []
        app = create_app(db_path=history_db, player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.EngineReady, log))
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen))
            await pilot.press("n")
            await wait_for(pilot, lambda: messages_of(EvalFinished, log), timeout=600)
            finished = messages_of(EvalFinished, log)[0]
            assert finished.run is not None, finished.error
            table = app.screen.query_one("#eval-table", DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            labels = {(r[0], r[1]) for r in rows}
            assert {("mfcc", "knn"), ("-", "popular"), ("-", "random")} <= labels
            assert all("±" in str(r[2]) for r in rows)
        again = Store.open(history_db)
        assert again.conn.execute("SELECT count(*) FROM eval_runs").fetchone()[0] == 1

    asyncio.run(scenario())
