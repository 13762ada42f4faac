"""The demo's generated listening history, training refusals and the seed's weight in a list."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrs_tui.cli import main
from mrs_tui.config import Settings
from mrs_tui.demo import DEMO_SOURCE, create_demo_library, remove_demo_history, write_demo_history
from mrs_tui.engine import Engine
from mrs_tui.errors import UserError
from mrs_tui.evaluation.datasets import history_dataset
from mrs_tui.evaluation.runner import EvalSettings, run_grid
from mrs_tui.evaluation.stats import paired_test
from mrs_tui.store import Store

LEARNED = ("shallow", "hybrid", "bert4rec", "contrastive")


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    """The real demo library (short clips), analysed with mfcc, with its generated history."""
    root = tmp_path_factory.mktemp("demo")
    create_demo_library(root / "music", seconds=6.0)
    store = Store.open(root / "demo.db")
    engine = Engine(store, Settings(backend="mfcc"))
    engine.scan(root / "music")
    engine.index(["mfcc"])
    history = write_demo_history(store, seed=0)
    yield engine, history, root
    store.close()


def test_demo_history_is_weeks_of_marked_sessions_with_plays_skips_and_likes(demo_engine):
    engine, history, _ = demo_engine
    counts = engine.store.session_counts_by_source()[DEMO_SOURCE]
    assert history.generated and counts["sessions"] == history.sessions >= 40
    assert counts["plays"] == history.plays and history.skips > 0 and history.likes > 0
    sessions = engine.store.sessions()
    span_days = (max(s["last_at"] for s in sessions) - min(s["started_at"] for s in sessions)) / 86400
    assert 28 <= span_days <= 70
    again = write_demo_history(engine.store, seed=5)  # a second run keeps the first history
    assert not again.generated and again.sessions == history.sessions


def test_each_session_keeps_to_one_mood_apart_from_skipped_strays(demo_engine):
    engine, _, _ = demo_engine
    from mrs_tui.demo import MOODS, STYLES

    style_of = {(s.genre, s.artist): s.name for s in STYLES}
    tracks = {t.id: style_of[(t.genre, t.artist)] for t in engine.store.tracks()}
    for session in engine.store.sessions()[:30]:
        plays = engine.store.plays(session_id=session["id"])
        skipped = {p.track_id for p in plays if p.event == "skip"}
        kept = {tracks[p.track_id] for p in plays if p.track_id not in skipped}
        assert any(kept <= set(m.styles) for m in MOODS), kept


@pytest.mark.slow
def test_learned_recommenders_beat_random_and_popular_on_the_demo_history(demo_engine):
    engine, _, _ = demo_engine
    dataset = history_dataset(engine.store, ["mfcc"], engine.version)
    run = run_grid(dataset, EvalSettings(ks=(10,), quick=True, recommenders=list(LEARNED)))
    baselines = {name: run.cell("-", name) for name in ("random", "popular")}
    for name in LEARNED:
        cell = run.cell("mfcc", name)
        assert cell.error is None
        hit = cell.parts["hot"]["HitRate@10"].mean
        for base_name, base in baselines.items():
            assert hit > base.parts["hot"]["HitRate@10"].mean, (name, base_name)
            # The same test sessions: the gain holds up in a paired test on NDCG@10.
            result = paired_test(cell.values["hot"]["NDCG@10"], base.values["hot"]["NDCG@10"], seed=0)
            assert result.mean_diff > 0 and result.significant, (name, base_name, result)


def test_removing_the_demo_history_keeps_the_users_own_plays(tmp_path):
    store = Store.open(tmp_path / "d.db")
    for style, n in (("Techno", 3), ("Folk", 3)):
        for i in range(n):
            store.add_track(f"/m/{style}{i}.flac", title=f"{style} {i}", genre=style, artist="x")
    own = store.new_session(1.0)
    store.add_play(own, 1, "complete", 1.0)
    generated = store.new_session(2.0, source=DEMO_SOURCE)
    store.add_play(generated, 2, "complete", 2.0)
    assert remove_demo_history(store) == 1
    assert [p.track_id for p in store.plays()] == [1]
    assert [s["source"] for s in store.sessions()] == ["app"]
    store.close()


def test_demo_command_writes_and_removes_the_history(tmp_path, capsys):
    folder, db = tmp_path / "music", tmp_path / "demo.db"
    assert main(["demo", "--folder", str(folder), "--db", str(db), "--create-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tracks"] == 24 and out["history"]["sessions"] > 40
    with Store.open(db) as store:
        assert store.session_counts_by_source()[DEMO_SOURCE]["plays"] == out["history"]["plays"]
    assert main(["demo", "--db", str(db), "--remove-history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed_sessions"] == out["history"]["sessions"]
    with Store.open(db) as store:
        assert store.plays() == []


def test_training_on_too_little_history_is_refused_with_what_is_needed(tmp_path):
    from backends import embedding_version
    from mrs_tui.evaluation import synthetic

    data = synthetic.generate(n_users=1, n_items=30, n_plays=4, session_length=(4, 4), backends={"mfcc": (8, 0.3)})
    store = Store.open(tmp_path / "small.db")
    synthetic.write_history(store, data, versions={"mfcc": embedding_version("mfcc")})
    engine = Engine(store, Settings(backend="mfcc"))
    with pytest.raises(
        UserError,
        match=r"bert4rec needs at least 30 played tracks in 5 sessions to learn from; the history has [0-9] in [1-4]\b",
    ):
        engine.train("bert4rec")
    assert store.conn.execute("SELECT count(*) FROM models").fetchone()[0] == 0
    store.close()


def test_the_seed_keeps_its_share_against_a_liked_track_of_another_style(demo_engine):
    engine, _, _ = demo_engine
    store = engine.store
    by_genre: dict[str, list[int]] = {}
    for track in store.tracks():
        by_genre.setdefault(track.genre, []).append(track.id)
    session = store.new_session(4e9)  # a session of its own, after the generated history
    store.add_play(session, by_genre["Techno"][0], "like", 4e9)
    seed = by_genre["Folk"][0]
    result = engine.suggest(seed, k=6, recommender="knn", session_id=session)
    genres = [s.track.genre for s in result.items]
    assert genres[0] == "Folk"  # the seed leads; the session's style does not take over
    assert 2 <= genres.count("Folk") <= 4 and "Techno" in genres
    assert result.seed_weight == 0.5 and "seed 50% / session 50%" in result.describe()
    percentiles = [s.percentile for s in result.items]
    assert percentiles == sorted(percentiles, reverse=True) and percentiles[0] > 90
    assert "top" in result.items[0].reason and "similarity" not in result.items[0].reason
    np.testing.assert_equal(len(set(s.track.id for s in result.items)), 6)


def test_after_the_demo_the_commands_act_on_what_it_showed(isolated_dirs, tmp_path, capsys):
    from mrs_tui.paths import default_db_path

    folder = tmp_path / "demo-music"
    assert main(["demo", "--folder", str(folder), "--create-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["db"] == str(default_db_path()) and out["db_note"] is None
    assert main(["history", "--limit", "0", "--json"]) == 0  # no --db: the default database, the demo's
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == out["history"]["sessions"] and all(s["source"] == DEMO_SOURCE for s in shown)
    assert main(["demo", "--folder", str(folder), "--remove-history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed_sessions"] == out["history"]["sessions"]


def test_the_demo_leaves_a_default_database_with_your_own_music_alone(isolated_dirs, tmp_path, capsys):
    from mrs_tui.library import scan
    from mrs_tui.paths import cache_dir, default_db_path
    from tests.conftest import make_library

    own = tmp_path / "my-music"
    make_library(own, styles=("piano",), per_style=2, seconds=1.0, formats=(".flac",))
    with Store.open(default_db_path()) as store:
        scan(store, own)
    assert main(["demo", "--folder", str(tmp_path / "demo-music"), "--create-only", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["db"] == str(cache_dir() / "demo.db")
    assert f"add --db {cache_dir() / 'demo.db'}" in out["db_note"] and "2 tracks of your own music" in out["db_note"]
    assert f"the demo uses the database {cache_dir() / 'demo.db'}" in captured.err
    with Store.open(default_db_path()) as store:
        assert len(store.tracks()) == 2 and store.plays() == []  # untouched
