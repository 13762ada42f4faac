"""A learned model's item side is computed once per fitted model and kept: in memory, and on disk for the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import recommenders
from backends import embedding_version
from mrs_tui import training
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.evaluation import synthetic
from mrs_tui.store import EmbeddingRow, Store
from recommenders.base import Interactions, Query
from tests.faults_helpers import child_env

LEARNED = ("shallow", "hybrid", "contrastive", "bert4rec")
VERSION = embedding_version("mfcc")


def small_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items, n_contexts = 60, 40
    cluster = rng.integers(0, 4, n_items)
    vectors = (rng.normal(size=(4, 12))[cluster] + 0.3 * rng.normal(size=(n_items, 12))).astype(np.float32)
    hot = np.arange(48)  # the last 12 items are cold
    contexts, items, stamps = [], [], []
    for c in range(n_contexts):
        members = hot[cluster[hot] == c % 4]
        for t, item in enumerate(rng.choice(members, size=min(6, len(members)), replace=False)):
            contexts.append(c)
            items.append(int(item))
            stamps.append(float(t))
    return Interactions(contexts, items, stamps, n_contexts=n_contexts, n_items=n_items), vectors


def fitted(name: str):
    interactions, vectors = small_data()
    quick = recommenders.recommender_class(name).quick_params
    return recommenders.create(name, seed=1, **quick).fit(interactions, vectors), vectors


@pytest.mark.parametrize("name", LEARNED)
def test_search_over_the_kept_item_side_answers_as_recommend(name):
    model, _ = fitted(name)
    queries = [
        Query(history=[0, 3, 5], pool="all", exclude=[0, 3, 5]),
        Query(history=[1, 2], pool="hot", exclude=[1, 2, 7, 8]),
        Query(seed=50, pool="cold", exclude=[50]),
        Query(history=[4, 9], pool="all"),  # the query's own items are candidates too (ELSA's − x)
    ]
    for query in queries:
        expected_items, expected_scores = model.recommend(query, 10)
        items, scores = model.search(query, 10)
        assert items.tolist() == expected_items.tolist(), (name, query)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LEARNED)
def test_an_installed_item_side_equals_a_fresh_computation_and_grows_by_new_rows_only(name, tmp_path):
    model, _ = fitted(name)
    fresh = model.item_side().copy()
    loaded = recommenders.load_saved(model.save(tmp_path / "m"))
    assert loaded._item_side is None  # nothing is computed at load: a cached copy can be installed instead
    np.testing.assert_allclose(loaded.item_side(), fresh, rtol=1e-5, atol=1e-6)
    new = np.random.default_rng(5).normal(size=(3, 12)).astype(np.float32)
    grown = recommenders.load_saved(tmp_path / "m")
    grown.set_item_side(fresh)
    grown.extend_items(new)
    recomputed = recommenders.load_saved(tmp_path / "m").extend_items(new)
    assert grown.item_side().shape[0] == 63
    np.testing.assert_array_equal(grown.item_side()[:60], fresh)  # the old rows were kept, not recomputed
    np.testing.assert_allclose(grown.item_side(), recomputed.item_side(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        grown.set_item_side(fresh)  # 60 rows for a model of 63 items


@pytest.fixture
def listener(tmp_path):
    data = synthetic.generate(
        n_users=4, n_items=80, n_plays=600, n_clusters=4, seed=2, backends={"mfcc": (16, 0.3)}, new_item_share=0.0
    )
    store = Store.open(tmp_path / "me.db")
    track_of = synthetic.write_history(store, data, versions={"mfcc": VERSION})
    yield store, track_of
    store.close()


def cache_file(engine: Engine, name: str):
    record = engine.store.latest_model(name, "mfcc", VERSION)
    return training.model_folder(engine.data_folder, record.path) / training.ITEM_SIDE_FILE


def fresh_engine(store: Store) -> Engine:
    """A new engine on the same database, as each CLI call is."""
    return Engine(store, Settings(backend="mfcc"))


@pytest.mark.parametrize("name", ["shallow", "hybrid"])
def test_the_cli_path_reads_the_item_side_from_disk_and_suggests_the_same(listener, name, monkeypatch):
    store, track_of = listener
    quick = recommenders.recommender_class(name).quick_params
    fresh_engine(store).train(name, params=dict(quick))
    seed = int(track_of["3"])
    first = fresh_engine(store)
    expected = [s.track.id for s in first.suggest(seed, k=8, recommender=name).items]
    path = cache_file(first, name)
    assert path.is_file()
    served = fresh_engine(store)
    model = served.fitted_model(name, "mfcc")
    assert model.cached_item_side_ids is not None  # taken from the file, not recomputed
    reference = recommenders.load_saved(path.parent)
    np.testing.assert_allclose(model.model.item_side(), reference.item_side(), rtol=1e-5, atol=1e-6)
    assert [s.track.id for s in served.suggest(seed, k=8, recommender=name).items] == expected
    monkeypatch.setenv("MRS_TUI_ITEM_SIDE_CACHE", "0")  # the former path: full scores, no cache
    assert [s.track.id for s in fresh_engine(store).suggest(seed, k=8, recommender=name).items] == expected


def test_tracks_analysed_later_extend_the_cached_item_side(listener):
    store, track_of = listener
    fresh_engine(store).train("shallow", params=dict(recommenders.recommender_class("shallow").quick_params))
    engine = fresh_engine(store)
    engine.suggest(int(track_of["3"]), k=5, recommender="shallow")
    path = cache_file(engine, "shallow")
    with np.load(path) as data:
        before = data["item_side"].copy()
        assert len(data["track_ids"]) == 80
    vectors = np.random.default_rng(9).normal(size=(4, 16)).astype(np.float32)
    ids = [store.add_track(f"/synthetic/new/{i}.flac", title=f"new {i}") for i in range(4)]
    store.put_embeddings(EmbeddingRow(t, "mfcc", VERSION, v) for t, v in zip(ids, vectors, strict=True))
    later = fresh_engine(store)
    result = later.suggest(int(track_of["3"]), k=40, recommender="shallow", pool="cold")
    assert set(ids) <= {s.track.id for s in result.items}  # new tracks are cold candidates, scored from audio
    with np.load(path) as data:
        assert data["track_ids"][-4:].tolist() == ids
        np.testing.assert_array_equal(data["item_side"][:80], before)
        expected = recommenders.load_saved(path.parent).extend_items(vectors).item_side()
        np.testing.assert_allclose(data["item_side"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder", "other model"])
def test_a_damaged_item_side_file_is_recomputed_and_rewritten(listener, damage, tmp_path):
    store, track_of = listener
    quick = dict(recommenders.recommender_class("hybrid").quick_params)
    fresh_engine(store).train("hybrid", params=quick)
    seed = int(track_of["5"])
    engine = fresh_engine(store)
    expected = [s.track.id for s in engine.suggest(seed, k=6, recommender="hybrid").items]
    path = cache_file(engine, "hybrid")
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a cache" * 10)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "folder":
        path.unlink()
        path.mkdir()
    else:  # a valid file of an earlier model of the same recommender, copied over
        other = recommenders.load_saved(path.parent)
        np.savez(
            path, track_ids=np.arange(80), item_side=other.item_side() * 2, key=np.str_("x"), checksum=np.str_("y")
        )
    again = fresh_engine(store)
    assert [s.track.id for s in again.suggest(seed, k=6, recommender="hybrid").items] == expected
    assert path.is_file()
    with np.load(path) as data:
        np.testing.assert_allclose(data["item_side"], recommenders.load_saved(path.parent).item_side(), rtol=1e-5)


@pytest.mark.parametrize("name", ["shallow", "contrastive", "hybrid"])
def test_with_the_item_side_on_disk_a_suggestion_loads_no_torch(listener, name):
    store, track_of = listener
    quick = dict(recommenders.recommender_class(name).quick_params)
    fresh_engine(store).train(name, params=quick)
    seed = int(track_of["3"])
    expected = [s.track.id for s in fresh_engine(store).suggest(seed, k=8, recommender=name).items]
    script = (
        "import sys, json\n"
        "from mrs_tui.config import Settings\nfrom mrs_tui.engine import Engine\nfrom mrs_tui.store import Store\n"
        f"engine = Engine(Store.open({str(store.path)!r}), Settings(backend='mfcc'))\n"
        f"result = engine.suggest({seed}, k=8, recommender={name!r})\n"
        "print(json.dumps([[s.track.id for s in result.items], 'torch' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    ids, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert ids == expected
    assert torch_loaded is False
