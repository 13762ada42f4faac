"""Comparing backends and recommenders on one seed, explaining a suggestion, blind A/B, the winner."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest

from backends import embedding_version
from mrs_tui.cli import main
from mrs_tui.comparison import (
    ComparisonSeed,
    ab_stats,
    blind_round,
    compare,
    describe_serving,
    describe_winners,
    jaccard_at_k,
    rank_biased_overlap,
    winners,
)
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import history_dataset
from mrs_tui.evaluation.runner import EvalSettings, load_run, run_grid, save_run
from mrs_tui.evaluation.stats import paired_test
from mrs_tui.explain import explain
from mrs_tui.store import EmbeddingRow, Store

BACKENDS = {"mfcc": (16, 0.3), "musicnn": (16, 1.2)}


# -- overlap measures against hand-computed values -----------------------------------------------


def test_jaccard_at_k_by_hand():
    assert jaccard_at_k([1, 2, 3], [1, 3, 4], 3) == pytest.approx(2 / 4)
    assert jaccard_at_k([1, 2, 3, 9], [3, 2, 1, 8], 3) == 1.0  # cut at K first
    assert jaccard_at_k([1, 2], [3, 4], 2) == 0.0
    assert np.isnan(jaccard_at_k([], [], 5))


def test_rank_biased_overlap_by_hand():
    p = 0.9
    # X1 = 1, X2 = 1, X3 = 2: RBO_ext = X3/3 p^3 + (1-p)/p (X1 p + X2/2 p^2 + X3/3 p^3)
    expected = 2 / 3 * p**3 + (1 - p) / p * (p + 0.5 * p**2 + 2 / 3 * p**3)
    assert rank_biased_overlap([1, 2, 3], [1, 3, 4], 3, p) == pytest.approx(expected)
    assert expected == pytest.approx(0.685, abs=1e-3)
    assert rank_biased_overlap([1, 2, 3, 4], [1, 2, 3, 4], 4) == pytest.approx(1.0)
    assert rank_biased_overlap([1, 2, 3], [4, 5, 6], 3) == 0.0
    # Agreement at the top weighs more than agreement at the bottom, Jaccard cannot tell them apart.
    top = rank_biased_overlap([1, 2, 3, 4], [1, 9, 8, 7], 4)
    bottom = rank_biased_overlap([1, 2, 3, 4], [9, 8, 7, 4], 4)
    assert top > bottom and jaccard_at_k([1, 2, 3, 4], [1, 9, 8, 7], 4) == jaccard_at_k([1, 2, 3, 4], [9, 8, 7, 4], 4)


def test_paired_test_matches_scipy_wilcoxon():
    from scipy.stats import wilcoxon

    a = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.6, 0.75, 0.88])
    b = np.array([0.5, 0.7, 0.6, 0.72, 0.4, 0.55, 0.65, 0.5])
    result = paired_test(a, b, seed=0)
    assert result.mean_diff == pytest.approx(np.mean(a - b))
    assert result.p_wilcoxon == pytest.approx(wilcoxon(a - b).pvalue)


# -- a listener with two analysed backends ---------------------------------------------------------


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    """120 tracks analysed with two backends (mfcc clean, musicnn noisy), ~900 plays in sessions."""
    data = synthetic.generate(n_users=3, n_items=120, n_plays=1500, n_clusters=5, days=90, seed=3, backends=BACKENDS)
    root = tmp_path_factory.mktemp("listener")
    store = Store.open(root / "me.db")
    versions = {name: embedding_version(name) for name in BACKENDS}
    track_of = synthetic.write_history(store, data, versions=versions)
    first = track_of["0"]
    store.put_embeddings(
        [
            EmbeddingRow(
                first,
                "musicnn",
                versions["musicnn"],
                data.vectors["musicnn"][0],
                extras={"tags": [["techno", 0.81], ["electronic", 0.64], ["beat", 0.4]]},
            )
        ]
    )
    engine = Engine(store, Settings(backend="mfcc", recommender="knn"))
    dataset = history_dataset(store, list(BACKENDS), engine.version)
    run = run_grid(dataset, EvalSettings(ks=(10,), recommenders=["knn"], quick=True))
    save_run(store, run)
    yield engine, data, track_of, run
    store.close()


def test_one_column_per_backend_with_the_chosen_recommender(listener):
    engine, _, track_of, _ = listener
    seed = ComparisonSeed(track=track_of["5"])
    result = compare(engine, seed, backends=["mfcc", "musicnn"], recommenders=["knn"], k=10)
    assert result.axis == "backends" and result.labels == ["mfcc", "musicnn"] and result.fixed == "knn"
    for column in result.columns:
        direct = engine.suggest(track_of["5"], k=10, backend=column.backend, recommender="knn")
        assert column.track_ids == [s.track.id for s in direct.items]
        assert column.result.recommender == "knn"


def test_shared_tracks_carry_one_mark_in_every_column_and_overlaps_equal_a_direct_count(listener):
    engine, _, track_of, _ = listener
    result = compare(engine, ComparisonSeed(track=track_of["5"]), backends=["mfcc", "musicnn"], k=10)
    a, b = (c.track_ids for c in result.columns)
    shared = set(a) & set(b)
    assert shared, "the two backends should agree on some tracks"
    assert set(result.shared) == shared
    assert len(set(result.shared.values())) == len(shared)  # one mark per track
    assert result.jaccard[0, 1] == pytest.approx(len(shared) / len(set(a) | set(b)))
    assert result.jaccard[0, 0] == 1.0 and result.rbo[0, 1] == pytest.approx(rank_biased_overlap(a, b, 10))


def test_columns_carry_the_latest_evaluation_and_a_paired_test(listener):
    engine, _, track_of, run = listener
    result = compare(engine, ComparisonSeed(track=track_of["5"]), backends=["mfcc", "musicnn"], k=10)
    for column in result.columns:
        stored = run.cell(column.backend, "knn").parts["hot"]["HitRate@10"]
        assert column.metrics.run_id == run.id
        assert column.metrics.summary("hot", "HitRate") == stored
    hot = next(p for p in result.paired if p.part == "hot")
    a = run.cell("mfcc", "knn").values["hot"]["NDCG@10"]
    b = run.cell("musicnn", "knn").values["hot"]["NDCG@10"]
    direct = paired_test(a, b, seed=0)  # stored values are rounded to 6 decimals
    assert hot.result.n == direct.n and hot.result.mean_diff == pytest.approx(direct.mean_diff, abs=1e-5)
    assert hot.result.p_bootstrap == pytest.approx(direct.p_bootstrap, abs=1e-3)
    assert hot.sentence.startswith("hot: mfcc better than musicnn")  # the clean backend wins


def test_stored_runs_keep_per_context_values_for_later_paired_tests(listener):
    engine, _, _, run = listener
    loaded = load_run(engine.store, run.id)
    np.testing.assert_allclose(
        loaded.cell("mfcc", "knn").values["hot"]["NDCG@10"], run.cell("mfcc", "knn").values["hot"]["NDCG@10"], atol=1e-6
    )


def test_recommenders_axis_and_an_untrained_learned_recommender_says_so(listener):
    engine, _, track_of, _ = listener
    result = compare(
        engine, ComparisonSeed(track=track_of["7"]), backends=["musicnn"], recommenders=["knn", "bert4rec", "popular"]
    )
    assert result.axis == "recommenders" and result.fixed == "musicnn"
    assert result.labels == ["knn", "bert4rec", "popular"]
    untrained = result.columns[1]
    assert untrained.needs_training and "not trained for musicnn" in untrained.error and not untrained.track_ids
    assert all(c.backend == "musicnn" for c in result.columns)
    assert result.columns[2].metrics is not None  # baselines are stored with backend "-"


def test_a_track_list_seed_stands_in_for_the_session(listener):
    engine, data, track_of, _ = listener
    cluster = int(data.clusters[0])
    same = [track_of[str(i)] for i in np.flatnonzero(data.clusters == cluster)[:4]]
    result = compare(engine, ComparisonSeed(tracks=tuple(same)), backends=["mfcc"], k=5)
    picks = result.columns[0].track_ids
    assert not set(picks) & set(same)
    by_track = {v: int(data.clusters[int(k)]) for k, v in track_of.items()}
    assert sum(by_track[t] == cluster for t in picks) >= 4


def test_explain_gives_mode_nearest_played_tracks_tags_and_agreement(listener):
    engine, _, track_of, _ = listener
    seed = track_of["5"]
    listed = engine.suggest(seed, k=10, backend="mfcc", recommender="knn")
    target = listed.items[0].track.id
    why = explain(engine, target, seed=seed, backend="mfcc", recommender="knn", k=10)
    assert why.rank == 1 and why.percentile == pytest.approx(listed.items[0].percentile)
    assert why.mode == ("cold" if target not in engine.store.played_track_ids() else "hot")
    assert why.nearest and why.nearest[0].where == "seed"
    sims = [n.similarity for n in why.nearest if n.where == "history"]
    assert sims == sorted(sims, reverse=True)
    assert any(a.backend == "musicnn" and a.recommender == "knn" for a in why.agreements)
    tagged = explain(engine, track_of["0"], seed=seed, backend="mfcc", recommender="knn", others=False)
    assert tagged.tags[0] == ("techno", pytest.approx(0.81))  # MusiCNN's tags although mfcc serves
    assert any("MusiCNN hears: techno 0.81" in line for line in tagged.lines())


def test_explain_of_a_never_played_track_is_cold_and_says_why(listener):
    engine, _, track_of, _ = listener
    played = engine.store.played_track_ids()
    never = next(t.id for t in engine.store.tracks() if t.id not in played)
    why = explain(engine, never, seed=track_of["5"], backend="mfcc", recommender="knn", others=False)
    assert why.mode == "cold" and "never played" in why.why


def test_blind_ab_choices_are_stored_and_tallied_with_a_wilson_interval(listener, tmp_path):
    engine, _, track_of, _ = listener
    rng = random.Random(4)
    picks = ["left", "right", "left", "same", "left"]
    preferred_mfcc = 0
    for picked in picks:
        round_ = blind_round(engine, ComparisonSeed(track=track_of["5"]), ("mfcc", "knn"), ("musicnn", "knn"), rng=rng)
        sides = {"left": round_.left.backend, "right": round_.right.backend}
        reveal = round_.record(engine.store, picked)
        assert f"left was {sides['left']}, right was {sides['right']}" in reveal
        preferred_mfcc += picked != "same" and sides[picked] == "mfcc"
    (row,) = ab_stats(engine.store)
    assert (row["a"], row["b"]) == ("mfcc/knn", "musicnn/knn")
    assert row["a_wins"] == preferred_mfcc and row["a_wins"] + row["b_wins"] == 4 and row["same"] == 1
    from mrs_tui.evaluation.stats import proportion_ci

    ci = proportion_ci(preferred_mfcc, 4)
    assert (row["ci_low"], row["ci_high"]) == (ci.low, ci.high)


def test_winner_per_mode_serves_and_is_named_in_the_header(listener):
    engine, _, track_of, run = listener
    best = winners(run)
    assert best["hot"].backend == "mfcc" and "for hot" in describe_winners(best)
    try:
        engine.use_winners(run.id)
        result = engine.suggest(track_of["5"], k=5)
        assert result.backend == best["hot"].backend and f"winner of evaluation #{run.id}" in result.describe()
        cold = engine.suggest(None, k=5, pool="cold")
        assert cold.backend == best["cold"].backend and cold.served.startswith("cold winner")
        # The header's line: each mode's pair and the run (id and day) they won.
        day = time.strftime("%Y-%m-%d", time.gmtime(run.created_at))
        line = describe_serving(engine.store, engine.served_pairs())
        assert line == (
            f"serving hot: {best['hot'].recommender} on {best['hot'].backend}"
            f" · new files: {best['cold'].recommender} on {best['cold'].backend} · evaluation #{run.id}, {day}"
        )
        # A winner that learns from history and has no model yet is named for training.
        with engine.store.write():
            engine.store.set_served_pair("hot", "shallow", "mfcc", run.id)
        assert Engine(engine.store, engine.settings).untrained_winners() == [("shallow", "mfcc")]
    finally:
        engine.stop_using_winners()
    assert engine.suggest(track_of["5"], k=5).served == ""
    assert describe_serving(engine.store, engine.served_pairs()) == ""


def test_compare_explain_and_ab_commands(listener, capsys):
    engine, _, track_of, _ = listener
    db = str(engine.store.path)
    seed = str(track_of["5"])
    assert main(["compare", "--db", db, "--seed", seed, "--backends", "mfcc,musicnn", "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["backend"] for c in out["columns"]] == ["mfcc", "musicnn"]
    assert len(out["columns"][0]["tracks"]) == 5 and out["overlap"]["labels"] == ["mfcc", "musicnn"]
    assert out["columns"][0]["metrics"]["parts"]["hot"]["HitRate@10"]["n"] > 0
    assert any(t["verdict"].startswith("hot:") for t in out["paired_tests"])
    target = str(out["columns"][0]["tracks"][0]["id"])
    assert main(["explain", "--db", db, target, "--seed", seed, "--backend", "mfcc", "--json"]) == 0
    why = json.loads(capsys.readouterr().out)
    assert why["rank"] == 1 and why["mode"] in ("hot", "cold") and why["nearest"]
    assert main(["ab", "stats", "--db", db, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert main(["compare", "--db", db, "--seed", seed, "--backends", "mfcc,musicnn", "-k", "5"]) == 0
    text = capsys.readouterr().out
    assert "rank-biased overlap" in text and "mfcc better than musicnn" in text
