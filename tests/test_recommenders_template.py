"""The recommender template: declared parameters, the shared fit, the finiteness check, routing.

Run over `recommenders.REGISTRY` as it is, so a newly registered recommender is covered
without being listed here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import recommenders
from mrs_tui.errors import UserError
from recommenders import Interactions, Query
from recommenders.base import InvalidParameter, NonFiniteModel

NAMES = sorted(recommenders.REGISTRY)


def small_data(n_contexts: int = 12, n_items: int = 20, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    contexts = np.repeat(np.arange(n_contexts), 4)
    items = rng.integers(0, n_items - 4, len(contexts))  # the last 4 items stay cold
    interactions = Interactions(contexts, items, np.arange(len(items), dtype=float), n_contexts, n_items)
    return interactions, rng.normal(size=(n_items, dim)).astype(np.float32)


def quick(name: str) -> dict:
    return dict(recommenders.recommender_class(name).quick_params)


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_parameter_is_refused_with_the_allowed_ones(name):
    with pytest.raises(InvalidParameter) as raised:
        recommenders.create(name, epoch=5)
    message = str(raised.value)
    assert "\n" not in message
    assert "'epoch'" in message and name in message
    allowed = [f for f in recommenders.recommender_class(name).Params.__dataclass_fields__]
    for field in allowed:
        assert field in message
    assert isinstance(raised.value, UserError)  # the CLI prints it as one line and exits


@pytest.mark.parametrize("name", NAMES)
def test_every_declared_parameter_is_stored_and_readable(name):
    model = recommenders.create(name, **quick(name))
    cls = recommenders.recommender_class(name)
    assert set(model.params) == set(cls.Params.__dataclass_fields__)
    for key, value in quick(name).items():
        assert model.params[key] == value
        assert getattr(model, key) == value


def test_values_are_converted_to_the_declared_type_or_refused():
    model = recommenders.create("shallow", epochs="5", lr="0.01", freeze_items="false", out_dim=None)
    assert (model.epochs, model.lr, model.freeze_items, model.out_dim) == (5, 0.01, False, None)
    with pytest.raises(InvalidParameter, match="epochs='many' of the hybrid recommender must be int"):
        recommenders.create("hybrid", epochs="many")
    with pytest.raises(InvalidParameter, match="zscore=2"):
        recommenders.create("knn", zscore=2)
    with pytest.raises(InvalidParameter, match="multiple of heads"):
        recommenders.create("bert4rec", hidden=30, heads=4)
    with pytest.raises(InvalidParameter, match="optimizer 'sgd'"):
        recommenders.create("hybrid", optimizer="sgd")


def test_parameters_are_frozen():
    model = recommenders.create("hybrid")
    with pytest.raises(AttributeError):
        model.config.epochs = 3


def test_a_model_saved_with_the_former_parameter_list_still_loads(tmp_path):
    interactions, vectors = small_data()
    model = recommenders.create("shallow", **quick("shallow"), seed=3).fit(interactions, vectors)
    model.save(tmp_path / "m")
    # The params.json written before parameters became a dataclass: the constructor's keywords.
    former = {
        "out_dim": None,
        "negatives": 20,
        "negative_pool": 256,
        "margin": 0.2,
        "epochs": 15,
        "batch_size": 256,
        "lr": 0.001,
        "freeze_items": True,
        "min_steps": 0,
        "standardize": True,
        "device": None,
        "threads": 1,
    }
    meta = json.loads((tmp_path / "m" / "params.json").read_text())
    assert meta["params"] == {
        **former,
        "paper_compat": False,
        "freeze_contexts": False,
        "negatives_from": "items",
        "learn_from_skips": True,
        "skip_weight": 1.0,
    }
    (tmp_path / "m" / "params.json").write_text(json.dumps({**meta, "params": former}))
    loaded = recommenders.load_saved(tmp_path / "m")
    assert loaded.seed == 3 and loaded.params == meta["params"]  # parameters added since take their defaults
    query = Query(history=[1, 2])
    np.testing.assert_array_equal(loaded.recommend(query, 5)[0], model.recommend(query, 5)[0])


@pytest.mark.parametrize("name", [n for n in NAMES if recommenders.recommender_class(n).uses_audio])
def test_non_finite_vectors_give_a_named_error_not_a_silent_model(name):
    interactions, vectors = small_data()
    vectors[3, 2] = np.nan
    model = recommenders.create(name, **{**quick(name), **({"epochs": 1} if "epochs" in quick(name) else {})})
    with pytest.raises(NonFiniteModel, match=f"the {name} recommender learned NaN or infinite values"):
        model.fit(interactions, vectors)


def test_a_learning_rate_that_diverges_is_reported():
    interactions, vectors = small_data()
    model = recommenders.create("hybrid", epochs=3, batch_size=4, min_steps=0, lr=float("inf"), threads=1)
    with pytest.raises(NonFiniteModel, match=r"hybrid recommender learned NaN .*\(net\..*lower the learning rate"):
        model.fit(interactions, vectors)


@pytest.mark.parametrize("name", [n for n in NAMES if not recommenders.recommender_class(n).uses_audio])
def test_models_without_audio_ignore_non_finite_vectors(name):
    interactions, vectors = small_data()
    vectors[:] = np.nan
    recommenders.create(name, **quick(name)).fit(interactions, vectors)


def test_routing_follows_the_capability_flags():
    interactions, vectors = small_data()
    knn = recommenders.create("knn").fit(interactions, vectors)
    popular = recommenders.create("popular").fit(interactions, vectors)
    cold_item = int(np.flatnonzero(~knn.hot_mask)[0])
    hot_item = int(np.flatnonzero(knn.hot_mask)[0])

    hot = knn.route(Query(seed=hot_item))
    assert (hot.mode, hot.query.pool, hot.supported) == ("hot", "all", True)
    cold = knn.route(Query(seed=cold_item, history=[hot_item]))
    assert (cold.mode, cold.query.pool, cold.supported) == ("cold", "cold", True)
    assert cold.query.history == [hot_item] and cold.query.seed == cold_item
    assert knn.route(Query(pool="cold")).mode == "cold"
    # popular ranks no cold item: asked for new tracks it says so instead of listing them in index order
    assert not popular.route(Query(pool="cold")).supported
    assert not popular.route(Query(seed=cold_item)).supported
    assert popular.route(Query(seed=hot_item)).supported


def test_the_app_asks_knn_for_new_tracks_when_the_chosen_model_ranks_no_cold_item(store, tmp_path, monkeypatch):
    from mrs_tui import training
    from mrs_tui.engine import Engine
    from tests.conftest import make_library

    # Routing is the question here, not how much history training asks for (tests/test_demo_history.py).
    monkeypatch.setattr(training, "MIN_TRAINING_PLAYS", 1)
    monkeypatch.setattr(training, "MIN_TRAINING_SESSIONS", 1)

    made = make_library(tmp_path / "music", styles=("techno", "piano"), per_style=4, seconds=3.0)
    engine = Engine(store)
    engine.scan(tmp_path / "music")
    engine.index()
    played = [store.track_by_path(str(p.resolve())) for p in made["piano"][:3]]
    for track in played:
        engine.record(track.id, "play")
    engine.train("elsa", engine.backend)
    fresh = store.track_by_path(str(made["piano"][3].resolve()))
    result = engine.suggest(fresh.id, k=4, recommender="elsa")  # a never-played seed: cold mode
    assert result.mode == "cold" and "knn ranks them by audio" in result.note
    assert result.items and all(s.new for s in result.items)
    hot = engine.suggest(played[0].id, k=2, recommender="elsa", pool="hot")
    assert hot.mode == "hot" and not hot.note
