"""One decision, one place: the app and the CLI ask the engine, so they cannot disagree.

Each test here pins a decision that used to be written twice and had drifted apart: the knn
fallback while a learned model is untrained, which models retrain by themselves, a training
job over several models, an evaluation run and what is kept of it, the backend rows and their
expected speed, the track search, what `embed` analyses, and that the app never waits for
the database on its UI thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import backends
import recommenders
from backends import embedding_version
from mrs_tui.cli import main
from mrs_tui.config import Settings
from mrs_tui.engine import Engine, backend_rows, expected_seconds_per_track
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.runner import EvalSettings
from mrs_tui.progress import Throttle, subrange
from mrs_tui.store import Store, Track
from tests.conftest import make_library

VERSION = embedding_version("mfcc")


@pytest.fixture
def listener(tmp_path):
    """80 tracks analysed with "mfcc" (vectors made up) and a history of ~600 plays."""
    data = synthetic.generate(
        n_users=4, n_items=80, n_plays=600, n_clusters=4, seed=2, backends={"mfcc": (16, 0.3)}, new_item_share=0.0
    )
    db = tmp_path / "me.db"
    store = Store.open(db)
    synthetic.write_history(store, data, versions={"mfcc": VERSION})
    engine = Engine(store, Settings(backend="mfcc", retrain_after_plays=5))
    yield engine
    store.close()


@pytest.fixture
def knn_learns(monkeypatch):
    """KNN registered as a trainable recommender: cheap, and it saves and loads like the rest."""
    monkeypatch.setitem(recommenders.REGISTRY, "knn", dataclasses.replace(recommenders.REGISTRY["knn"], trainable=True))


def cli(capsys, db, *argv):
    config = Path(db).parent / "none.toml"
    code = main(["--db", str(db), "--config", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def a_played_track(engine: Engine) -> int:
    return min(engine.store.played_track_ids())


# -- the knn fallback --------------------------------------------------------------------------


def test_cli_suggest_falls_back_to_knn_while_the_selected_model_is_untrained(listener, capsys):
    engine = listener
    seed = a_played_track(engine)
    db = engine.store.path
    argv = ("suggest", "--backend", "mfcc", "--recommender", "bert4rec", "--seed", str(seed), "-k", "5")
    code, out, err = cli(capsys, db, *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["recommender"] == "knn" and data["fallback_from"] == "bert4rec"
    assert "not trained" in data["note"] and len(data["suggestions"]) == 5
    code, out, _ = cli(capsys, db, *argv)
    assert code == 0 and "showing knn meanwhile" in out and "mrs-tui train --recommenders bert4rec" in out


def test_the_fallback_is_the_engines_answer_for_the_selected_recommender(listener):
    engine = listener
    engine.recommender = "bert4rec"
    result = engine.suggest(a_played_track(engine), k=3)
    assert result.recommender == "knn" and result.fallback_from == "bert4rec" and len(result.items) == 3
    # Asked by name (a comparison), the untrained model is refused, never shown under another name.
    with pytest.raises(Exception, match="not trained"):
        engine.suggest(a_played_track(engine), k=3, recommender="bert4rec")


# -- training jobs and the retrain policy -----------------------------------------------------


def test_a_training_job_goes_on_after_a_model_that_cannot_be_trained(listener, knn_learns, capsys):
    engine = listener
    code, out, err = cli(capsys, engine.store.path, "train", "--backend", "mfcc", "--recommenders", "popular,knn", "-q")
    assert code == 2 and "popular" in err and "fitted on the fly" in err
    assert "knn on mfcc: trained" in out
    assert [r.recommender for r in engine.store.model_records()] == ["knn"]


def test_only_the_selected_and_previously_trained_models_retrain_by_themselves(listener, knn_learns, capsys):
    engine = listener
    assert recommenders.get_spec("hybrid").trainable
    # hybrid has more than enough plays but nobody chose or trained it: it is not due by itself.
    assert engine.retrain_due("hybrid", "mfcc")
    assert engine.due_models("mfcc") == ["knn"]
    code, out, err = cli(capsys, engine.store.path, "train", "--backend", "mfcc", "--if-due", "--json", "-q")
    assert code == 0, err
    entries = {e["recommender"]: e for e in json.loads(out)}
    assert entries["knn"]["trained"]
    assert not entries["hybrid"]["trained"] and "never trained" in entries["hybrid"]["reason"]
    assert [r.recommender for r in engine.store.model_records()] == ["knn"]


def test_train_models_reports_each_model_and_stops_at_a_cancel(listener, knn_learns):
    engine = listener
    outcomes = list(engine.train_models(["popular", "knn"], "mfcc"))
    assert [(o.recommender, o.trained) for o in outcomes] == [("popular", False), ("knn", True)]
    assert "fitted on the fly" in outcomes[0].error
    cancel = threading.Event()
    cancel.set()
    stopped = list(engine.train_models(["knn", "knn"], "mfcc", cancel=cancel))
    assert len(stopped) == 1 and stopped[0].cancelled
    assert len(engine.store.model_records()) == 1  # nothing saved by the cancelled job


# -- evaluation runs ---------------------------------------------------------------------------


def test_an_evaluation_run_uses_the_users_session_gap_and_is_kept_only_when_complete(listener):
    engine = listener
    engine.settings.session_gap_minutes = 45.0
    settings = EvalSettings(ks=(10,), recommenders=["knn"], quick=True)
    run = engine.evaluate(settings)
    assert run.settings["session_gap_minutes"] == 45.0 and run.settings["backends"] == ["mfcc"]
    assert run.id is not None and [r["id"] for r in engine.store.eval_runs()] == [run.id]
    cancel = threading.Event()
    cancel.set()
    cancelled = engine.evaluate(settings, cancel=cancel)
    assert cancelled.cancelled and cancelled.id is None
    assert len(engine.store.eval_runs()) == 1


# -- backend rows ------------------------------------------------------------------------------


def test_one_speed_estimate_for_the_backend_list_and_the_app(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(backends, "gpu_visible", lambda: False)
    rows = {r.name: r for r in backend_rows()}
    for name, row in rows.items():
        measured = backends.get_spec(name).cpu_seconds_per_track  # on 2 cores: 8 take a quarter of it
        assert row.seconds_per_track == (None if measured is None else round(measured / 4, 2))
        assert row.slow == (row.seconds_per_track is None or row.seconds_per_track > 2.0)
    mfcc_estimate = rows["mfcc"].seconds_per_track  # the expected-speed table, not a timing
    assert mfcc_estimate < 1 and not rows["mfcc"].slow and rows["jukebox"].slow
    code, out, _ = cli(capsys, tmp_path / "lib.db", "backends", "--json")
    listed = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    for name, row in rows.items():
        assert listed[name]["seconds_per_track_cpu"] == row.seconds_per_track == expected_seconds_per_track(name)
        assert listed[name]["slow"] == row.slow


def test_the_app_starts_analysis_for_a_backend_that_is_quick_on_this_machine(tmp_path, monkeypatch):
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.pickers import BackendPicker
    from tests.test_tui import SIZE, SLOW_SPEC, RecordingPlayer, messages_of, wait_for

    # 4 s per track on 2 cores is 1 s on 8: quick enough to start by itself.
    spec = dataclasses.replace(SLOW_SPEC, cpu_seconds_per_track=4.0)
    monkeypatch.setitem(backends.REGISTRY, "slowtest", spec)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(backends, "gpu_visible", lambda: False)
    music = tmp_path / "music"
    make_library(music, styles=("piano",), per_style=2, seconds=2.0)

    async def scenario():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=RecordingPlayer())
        notes = []
        app.notify = lambda text, **kw: notes.append(text)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BackendPicker))
            row = next(r for r in app.screen.rows if r.name == "slowtest")
            assert row.seconds_per_track == 1.0 and not row.slow
            app.screen.dismiss("slowtest")
            await wait_for(pilot, lambda: len(messages_of(msg.IndexFinished, log)) == 2, timeout=120)
            assert messages_of(msg.IndexFinished, log)[1].report.embedded == {"slowtest": 2}
            assert not any("per track here" in n for n in notes)

    asyncio.run(scenario())


# -- track search ------------------------------------------------------------------------------


def test_track_search_is_every_word_in_any_order_for_the_cli_and_the_app(tmp_path, capsys):
    from mrs_tui.tui.widgets.library import TrackList

    root = tmp_path / "music"
    make_library(root, styles=("techno", "piano"), per_style=2, seconds=2.0)
    db = tmp_path / "lib.db"
    assert cli(capsys, db, "index", str(root), "-q")[0] == 0
    code, out, _ = cli(capsys, db, "library", "--search", "felt HAMMER", "--json")
    assert code == 0
    found = json.loads(out)
    assert len(found) == 2 and {t["artist"] for t in found} == {"Hammer & Felt"}
    code, out, _ = cli(capsys, db, "library", "--search", "hammer techno", "--json")
    assert code == 0 and json.loads(out) == []
    tracks = Store.open(db).tracks()
    app_list = TrackList()
    app_list.filter_text = "felt HAMMER"
    assert sorted(t.id for t in tracks if app_list.matches(t)) == sorted(t["id"] for t in found)
    assert Track(1, "/m/x.flac", title="Blue in Green", artist="Miles").matches("green miles")
    assert not Track(1, "/m/x.flac", title="Blue in Green").matches("green red")


# -- embed analyses what index stores -----------------------------------------------------------


def test_embed_prints_the_vector_that_index_stores(tmp_path, capsys):
    root = tmp_path / "music"
    made = make_library(root, styles=("chiptune",), per_style=2, seconds=3.0, formats=(".ogg",))
    db = tmp_path / "lib.db"
    assert cli(capsys, db, "index", str(root), "--backend", "mfcc", "-q")[0] == 0
    path = made["chiptune"][0]
    code, out, err = cli(capsys, db, "embed", str(path), "--backend", "mfcc", "--json")
    assert code == 0, err
    (entry,) = json.loads(out)
    store = Store.open(db)
    track = store.track_by_path(str(path.resolve()))
    stored = store.embedding(track.id, "mfcc", VERSION).vector
    np.testing.assert_allclose(np.asarray(entry["embedding"], np.float32), stored, rtol=1e-6, atol=1e-6)


# -- the UI thread never queries -------------------------------------------------------------


def shown_text(widget) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(widget.content)
    return " ".join(console.export_text().split())


def test_moving_the_cursor_and_opening_the_pickers_never_query_on_the_ui_thread(tmp_path):
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.pickers import BackendPicker, RecommenderPicker
    from mrs_tui.tui.widgets.details import TrackDetails
    from mrs_tui.tui.widgets.library import TrackList
    from tests.test_tui import SIZE, RecordingPlayer, messages_of, wait_for

    music = tmp_path / "music"
    make_library(music, styles=("techno", "piano"), per_style=2, seconds=2.0)

    async def scenario():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=RecordingPlayer())
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            table = app.screen.query_one(TrackList)
            await wait_for(pilot, lambda: table.row_count == 4)
            conn = app.engine.store.conn
            on_ui_thread = []
            execute = conn.execute

            def watched(sql, *args, **kwargs):
                if threading.current_thread() is threading.main_thread():
                    on_ui_thread.append(sql)
                return execute(sql, *args, **kwargs)

            conn.execute = watched
            table.focus()
            await pilot.press("down", "down", "up")
            selected = table.selected_track_id

            def facts_of_selected():
                return [m.facts for m in messages_of(msg.TrackFactsReady, log) if m.facts.track_id == selected]

            await wait_for(pilot, lambda: facts_of_selected())
            assert facts_of_selected()[-1].plays == 0
            await pilot.press("l")  # a like is written in a worker, and the pane reads it again
            await wait_for(pilot, lambda: facts_of_selected()[-1].plays == 1)
            assert "Played 1 time" in shown_text(app.screen.query_one(TrackDetails))
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, RecommenderPicker))
            await pilot.press("escape")
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BackendPicker))
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert on_ui_thread == []

    asyncio.run(scenario())


# -- progress helpers ----------------------------------------------------------------------------


def test_the_throttle_lets_an_update_through_per_interval_and_every_final_one():
    now = [100.0]
    throttle = Throttle(0.25, clock=lambda: now[0])
    seen = []
    report = throttle.wrap(seen.append)
    for step in range(10):  # 10 updates in 0.5625 s: the first, then one per 0.25 s
        report(step)
        now[0] += 0.0625
    assert seen == [0, 4, 8]
    assert throttle.ready(final=True)


def test_subrange_maps_a_sub_task_into_its_slice_of_the_parent():
    seen = []
    child = subrange(lambda done, total, text: seen.append((done, total, text)), 2.0, 0.5, 6, "fitting knn")
    child(0, 4, "epoch 1")
    child(2, 4, "epoch 3")
    child(9, 4, "")  # overshooting stays inside the slice
    child(1, 0, "")  # a zero total counts as not started
    assert seen == [
        (2.0, 6, "fitting knn: epoch 1"),
        (2.25, 6, "fitting knn: epoch 3"),
        (2.5, 6, "fitting knn"),
        (2.0, 6, "fitting knn"),
    ]
    assert subrange(None, 0, 1, 1) is None


def test_the_app_asks_before_downloading_weights(tmp_path, monkeypatch):
    from mrs_tui.errors import UserError
    from mrs_tui.tui import messages as msg
    from mrs_tui.tui.app import create_app
    from mrs_tui.tui.screens.pickers import BackendPicker
    from mrs_tui.tui.screens.prompts import ConfirmPrompt
    from tests.test_tui import SIZE, RecordingPlayer, messages_of, wait_for

    assert backends.backend_status("musicnn").state == backends.WEIGHTS_MISSING  # the test's own empty cache
    fetched = []

    def offline_fetch(name, **kwargs):
        fetched.append(name)
        raise UserError("cannot reach PyPI", "connect to the network, or: mrs-tui backends fetch musicnn --from WHEEL")

    monkeypatch.setattr(backends, "fetch_weights", offline_fetch)
    music = tmp_path / "music"
    make_library(music, styles=("piano",), per_style=2, seconds=2.0)

    async def scenario():
        log = []
        app = create_app(db_path=tmp_path / "lib.db", folder=music, player=RecordingPlayer())
        notes = []
        app.notify = lambda text, **kw: notes.append(text)
        async with app.run_test(size=SIZE, message_hook=log.append) as pilot:
            await wait_for(pilot, lambda: messages_of(msg.IndexFinished, log))
            before = app.engine.backend
            for answer in ("n", "y"):
                await pilot.press("b")
                await wait_for(pilot, lambda: isinstance(app.screen, BackendPicker))
                app.screen.dismiss("musicnn")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPrompt))
                assert "weights are not installed" in app.screen.question
                await pilot.press(answer)
                if answer == "n":
                    await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmPrompt))
                    assert fetched == [] and app.engine.backend == before
                    assert any("musicnn not chosen" in n for n in notes)
            await wait_for(pilot, lambda: messages_of(msg.WeightsFetched, log))
            assert fetched == ["musicnn"]
            assert app.engine.backend == before  # nothing was installed, so nothing switched
            assert any("cannot reach PyPI" in n for n in notes)

    asyncio.run(scenario())
