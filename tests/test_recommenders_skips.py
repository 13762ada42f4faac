"""Skips and dislikes teach the learned recommenders (`learn_from_skips`), and the evaluation shows it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recommenders
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import Dataset, VectorSource
from mrs_tui.evaluation.runner import EvalSettings, prepare_split, resolve_rows, run_grid
from mrs_tui.history import History
from recommenders.base import Interactions, Query


@pytest.fixture(scope="module")
def skipper():
    """One listener who skips one style that sounds much like the one they love."""
    return synthetic.generate(n_users=1, n_items=240, n_plays=4000, skip_rate=0.5, skipped_sounds_like=0.7, seed=11)


def dataset_of(data) -> Dataset:
    sources = {"good": VectorSource("good", data.item_keys, lambda: data.vectors["good"])}
    return Dataset("generated", "log", data.log, sources, default_contexts="sessions")


@pytest.fixture(scope="module")
def split_and_vectors(skipper):
    dataset = dataset_of(skipper)
    split = prepare_split(dataset, EvalSettings(), ["good"])
    return split, dataset.sources["good"].rows(split.item_keys)


def skipped_style_rank(model, split, data) -> float:
    """Mean rank percentile (0 = top) of the skipped style's tracks over the test sessions' queries."""
    cluster = data.clusters[np.asarray([int(k) for k in split.item_keys])]
    skipped = cluster == data.disliked[0]
    out = []
    for case in split.hot + split.val:
        scores = model.score(Query(history=case.query.tolist()))
        rank = np.empty(len(scores))
        rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores)) / len(scores)
        out.append(rank[skipped].mean())
    return float(np.mean(out))


def test_negative_pairs_leave_out_what_was_also_played_and_never_make_a_track_hot():
    interactions = Interactions(
        [0, 0, 1],
        [0, 1, 2],
        [0.0, 1.0, 2.0],
        n_contexts=2,
        n_items=5,
        negative_contexts=[0, 0, 1, 1],
        negative_items=[1, 3, 4, 4],
    )
    negatives = interactions.negative_matrix()
    assert {(int(c), int(i)) for c, i in zip(*negatives.nonzero(), strict=True)} == {(0, 3), (1, 4)}
    assert interactions.hot_mask().tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="negative item index out of range"):
        Interactions([0], [0], [0.0], n_contexts=1, n_items=2, negative_contexts=[0], negative_items=[2])


def test_the_history_hands_skips_and_dislikes_to_training_as_negatives(store):
    tracks = [store.add_track(f"/m/{i}.flac", title=f"t{i}") for i in range(4)]
    history = History(store, clock=lambda: 1000.0)
    history.record(tracks[0], "complete", at=1000.0)
    history.record(tracks[1], "skip", at=1010.0)
    history.record(tracks[2], "skip", at=1020.0)
    history.record(tracks[2], "like", at=1030.0)  # skipped, then liked: the last verdict counts
    history.record(tracks[3], "dislike", at=1040.0)
    data = History(store).data({t: i for i, t in enumerate(tracks)})
    assert sorted(data.interactions.items.tolist()) == [0, 2]
    assert sorted(data.interactions.negative_items.tolist()) == [1, 3]


def test_paper_compat_and_bert4rec_do_not_learn_from_skips_by_default():
    for name in ("shallow", "contrastive", "hybrid", "elsa"):
        assert recommenders.create(name).learn_from_skips is True
        assert recommenders.create(name, paper_compat=True).learn_from_skips is False
    assert recommenders.create("bert4rec").learn_from_skips is False


def test_without_skips_in_the_data_the_switch_changes_nothing():
    data = synthetic.generate(n_users=10, n_items=60, n_plays=600, seed=3)
    split = prepare_split(dataset_of(data), EvalSettings(), ["good"])
    vectors = dataset_of(data).sources["good"].rows(split.item_keys)
    quick = recommenders.recommender_class("shallow").quick_params
    on = recommenders.create("shallow", seed=1, **quick, learn_from_skips=True).fit(split.train, vectors)
    off = recommenders.create("shallow", seed=1, **quick, learn_from_skips=False).fit(split.train, vectors)
    np.testing.assert_array_equal(on.item_embeddings, off.item_embeddings)


@pytest.mark.parametrize(("name", "margin"), [("shallow", 0.03), ("contrastive", 0.03), ("hybrid", 0.2)])
def test_with_skips_the_skipped_style_ranks_lower(skipper, split_and_vectors, name, margin):
    split, vectors = split_and_vectors
    assert split.train.has_negatives
    quick = recommenders.recommender_class(name).quick_params
    ranks = {}
    for flag in (False, True):
        model = recommenders.create(name, seed=0, **quick, learn_from_skips=flag).fit(split.train, vectors)
        ranks[flag] = skipped_style_rank(model, split, skipper)
    assert ranks[True] > ranks[False] + margin, ranks


def test_eval_with_and_without_skips_side_by_side_on_the_same_seeds(skipper):
    rows = [r.label for r in resolve_rows(["hybrid", "knn"], negatives="both")]
    assert rows == ["hybrid", "hybrid+neg", "knn", "elsa", "elsa+neg", "popular", "random"]
    run = run_grid(
        dataset_of(skipper),
        EvalSettings(ks=(10,), recommenders=["hybrid"], negatives="both", quick=True, selection="fixed"),
    )
    hit = {c.recommender: c.parts["hot"]["HitRate@10"].mean for c in run.cells if not c.error}
    assert hit["hybrid+neg"] >= hit["hybrid"] - 0.03
    assert hit["hybrid+neg"] > hit["random"] + 0.2
    assert any("skipped or disliked" in note for note in run.settings["notes"])
    assert "hybrid+neg" in run.table()


def test_eval_command_takes_the_negatives_option(tmp_path, capsys):
    from backends import embedding_version
    from mrs_tui.cli import main
    from mrs_tui.store import Store

    data = synthetic.generate(n_users=1, n_items=80, n_plays=600, skip_rate=0.5, backends={"mfcc": (8, 0.3)}, seed=5)
    with Store.open(tmp_path / "lib.db") as store:
        synthetic.write_history(store, data, versions={"mfcc": embedding_version("mfcc")})
        assert sum(p.event == "skip" for p in store.plays()) == len(data.log.negatives)
    argv = ["--db", str(tmp_path / "lib.db"), "eval", "--recommenders", "hybrid", "--negatives", "both"]
    assert main([*argv, "--quick", "--no-store", "-q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    labels = {c["recommender"] for c in out["cells"]}
    assert {"hybrid", "hybrid+neg", "elsa", "elsa+neg"} <= labels
    assert out["settings"]["negatives"] == "both"
