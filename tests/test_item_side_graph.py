"""The HNSW graph over a learned model's item side: what it returns is what the flat search returns.

Item sides are not unit vectors (a hybrid's factors, a shallow net's projections), so the rows
here have norms spread over a factor of ten, in clusters: a graph built on the rows as they
are would miss the long rows, and a graph built too sparsely misses whole clusters.
"""

from __future__ import annotations

import numpy as np
import pytest

import recommenders
from mrs_tui import catalogue, training
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from recommenders import serving
from recommenders.base import Query
from recommenders.serving import ItemSideModel, build_item_graph, inner_product_search, use_item_graph
from tests.test_item_side import VERSION, listener  # noqa: F401 - the fixture

N_ITEMS, DIM = 4000, 24


def _model() -> ItemSideModel:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, DIM))
    side = centres[rng.integers(0, 20, N_ITEMS)] + 0.4 * rng.standard_normal((N_ITEMS, DIM))
    side *= rng.uniform(0.2, 2.0, N_ITEMS)[:, None]
    hot = rng.random(N_ITEMS) < 0.3
    return ItemSideModel("contrastive", 0, side.astype(np.float32), hot, {})


def _graph_model(model: ItemSideModel) -> ItemSideModel:
    twin = ItemSideModel("contrastive", 0, model.side, model.hot_mask, {})
    graph = build_item_graph(
        twin.side, links=catalogue.HNSW_LINKS, ef_construction=training.ITEM_GRAPH_EF_CONSTRUCTION, ef_search=128
    )
    use_item_graph(twin.item_index, twin.side, graph)
    return twin


QUERIES = [
    Query(),
    Query(pool="hot"),
    Query(pool="cold", exclude=range(0, N_ITEMS, 3)),
    Query(exclude=range(50)),
]


@pytest.mark.parametrize("query", QUERIES, ids=["all", "hot", "cold-excluding-a-third", "excluding-50"])
def test_the_graph_finds_the_flat_top_k_with_pools_and_exclusions(query, monkeypatch):
    monkeypatch.setattr(serving, "EXACT_POOL", 100)  # every pool here goes through the graph walk
    flat = _model()
    walked = _graph_model(flat)
    mask = flat.candidate_mask(query)
    rng = np.random.default_rng(3)
    recalls = []
    for _ in range(50):
        vector = flat.side[rng.integers(N_ITEMS)] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
        want, _ = inner_product_search(flat, flat.item_index, flat.side, vector, query, 20)
        got, got_scores = inner_product_search(walked, walked.item_index, walked.side, vector, query, 20)
        assert mask[got].all(), "a track outside the pool, or an excluded one, came back"
        assert len(got) == 20 and len(set(got.tolist())) == 20
        np.testing.assert_allclose(got_scores, walked.side[got] @ vector, rtol=1e-5, atol=1e-5)
        assert (np.diff(got_scores) <= 0).all()  # best first
        recalls.append(len(set(got.tolist()) & set(want.tolist())) / 20)
    assert "index" not in walked.item_index  # the flat index was never needed
    assert min(recalls) >= 0.8 and np.mean(recalls) >= 0.98


def test_a_small_pool_is_ranked_exactly_and_a_stale_graph_is_not_walked():
    flat = _model()
    walked = _graph_model(flat)
    vector = flat.side[5]
    # 40 candidates: below EXACT_POOL, ranked over their own rows: exactly the flat answer.
    query = Query(exclude=range(40, N_ITEMS))
    np.testing.assert_array_equal(
        inner_product_search(walked, walked.item_index, walked.side, vector, query, 10)[0],
        inner_product_search(flat, flat.item_index, flat.side, vector, query, 10)[0],
    )
    # The item side changed (tracks appended, a refit): the graph attached to the old one is ignored.
    grown = np.vstack([walked.side, 10 * walked.side[5:6]])
    twin = ItemSideModel("contrastive", 0, grown, np.zeros(len(grown), bool), {})
    twin.item_index.update(walked.item_index)
    items, _ = inner_product_search(twin, twin.item_index, twin.side, vector, Query(), 1)
    assert items[0] == N_ITEMS  # the appended long row, which the old graph does not hold
    assert "index" in twin.item_index  # answered by the flat index


def test_building_the_graph_can_be_cancelled():
    assert build_item_graph(_model().side, links=8, ef_construction=20, ef_search=32, cancel=lambda: True) is None


# -- in the engine -------------------------------------------------------------------------------------


@pytest.fixture
def big_enough(monkeypatch):
    """The 80-track test library counts as big: graphs are kept, and pools go through the walk."""
    monkeypatch.setattr(catalogue, "APPROXIMATE_ABOVE", 10)
    monkeypatch.setattr(serving, "EXACT_POOL", 5)


def _served(store, name: str, *, background: bool = True):
    engine = Engine(store, Settings(backend="mfcc"), background_builds=background)
    return engine, engine.fitted_model(name, "mfcc")


def _suggested(engine, seed: int, name: str) -> list[int]:
    return [s.track.id for s in engine.suggest(seed, k=10, recommender=name).items]


@pytest.mark.parametrize("name", ["hybrid", "shallow"])
def test_the_app_walks_a_graph_of_a_big_item_side_and_the_next_start_reads_it(listener, big_enough, name, monkeypatch):  # noqa: F811
    store, track_of = listener
    Engine(store, Settings(backend="mfcc")).train(name, params=dict(recommenders.recommender_class(name).quick_params))
    seed = int(track_of["3"])
    cli, cli_model = _served(store, name, background=False)
    expected = _suggested(cli, seed, name)
    assert cli_model.graph_builder is None  # a one-off call scans: cheaper than reading a graph

    app, model = _served(store, name)
    model.graph_builder.join(timeout=60)
    assert model.graph_error is None
    assert "graph" in model.model.item_index
    assert _suggested(app, seed, name) == expected  # 80 items: the walk finds the exact answer
    folder = training.model_folder(app.data_folder, model.record.path)
    assert (folder / training.ITEM_GRAPH_FILE).is_file()

    def no_build(*args, **kwargs):
        raise AssertionError("the graph on disk should have been read")

    monkeypatch.setattr(serving, "build_item_graph", no_build)
    again, model = _served(store, name)
    model.graph_builder.join(timeout=60)
    assert model.graph_error is None and "graph" in model.model.item_index
    assert _suggested(again, seed, name) == expected


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another side"])
def test_a_damaged_or_stale_graph_file_is_built_again(listener, big_enough, damage):  # noqa: F811
    store, track_of = listener
    Engine(store, Settings(backend="mfcc")).train(
        "hybrid", params=dict(recommenders.recommender_class("hybrid").quick_params)
    )
    seed = int(track_of["5"])
    app, model = _served(store, "hybrid")
    model.graph_builder.join(timeout=60)
    expected = _suggested(app, seed, "hybrid")
    path = training.model_folder(app.data_folder, model.record.path) / training.ITEM_GRAPH_FILE
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a graph" * 40)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:  # a valid graph, of a side with one row more
        side = model.model.item_side()
        other = build_item_graph(np.vstack([side, side[:1]]), links=16, ef_construction=40, ef_search=64)
        import faiss

        faiss.write_index(other, str(path))
    again, model = _served(store, "hybrid")
    model.graph_builder.join(timeout=60)
    assert model.graph_error is None and "graph" in model.model.item_index
    assert _suggested(again, seed, "hybrid") == expected
    assert path.read_bytes() != b"\x00not a graph" * 40 and len(path.read_bytes()) >= len(good) - 64
