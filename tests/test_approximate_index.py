"""Big libraries search an HNSW graph: exact below the threshold, exact in meaning above it, rebuilt when damaged.

The graph path is tested on small libraries by lowering the catalogue's threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrs_tui.catalogue import APPROXIMATE_ABOVE, Catalogue
from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.evaluation.vector_model import VectorDistribution
from mrs_tui.store import Store
from mrs_tui.store.bulk import BulkPlay, BulkTrack, write_bulk_history
from recommenders import knn
from recommenders.base import Query, l2_normalize

N = 1500


def _clustered(n: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Vectors with the structure of real embeddings (clusters in a low-rank span), not uniform noise."""
    rng = np.random.default_rng(seed)
    real_like = rng.normal(size=(40, 6)) @ rng.normal(size=(6, dim)) + rng.normal(size=dim)
    vectors, _ = VectorDistribution.fit(real_like).sample(n, n_clusters=max(1, n // 60), seed=seed)
    return vectors


@pytest.fixture
def engine(tmp_path):
    store = Store.open(tmp_path / "library.db")
    rng = np.random.default_rng(5)
    tracks = [BulkTrack(f"/m/{i:05d}.flac", f"t{i}", f"a{i % 9}") for i in range(N)]
    plays = [
        BulkPlay(s, int(rng.integers(0, 200)), "complete", 1e6 + s * 9000 + n) for s in range(20) for n in range(6)
    ]
    write_bulk_history(store, tracks, {("mfcc", "1"): _clustered(N)}, plays, source="app")
    return Engine(store, Settings(backend="mfcc", recommender="knn"))


def _exact_ranking(catalogue: Catalogue, profile: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    scores = catalogue.unit @ l2_normalize(profile)
    scores[~allowed] = -np.inf
    return np.argsort(-scores, kind="stable")[:k].tolist()


def _knn(engine: Engine, threshold: int):
    catalogue = engine.catalogue()
    catalogue.approximate_above = threshold
    catalogue.search_index(wait=True)
    return catalogue, engine.fitted_model()


def test_below_the_threshold_the_search_is_exact(engine):
    catalogue, model = _knn(engine, APPROXIMATE_ABOVE)
    assert not catalogue.approximate and not hasattr(catalogue.search_index(), "hnsw")
    rng = np.random.default_rng(1)
    for _ in range(20):
        history = rng.integers(0, N, 4).tolist()
        exclude = set(rng.integers(0, N, 30).tolist())
        items, _ = model.recommend(Query(history=history, exclude=exclude), 20)
        allowed = np.ones(N, bool)
        allowed[list(exclude)] = False
        assert items.tolist() == _exact_ranking(catalogue, model.vectors[history].mean(0), allowed, 20)


@pytest.mark.parametrize("exact_pool", [50, knn.EXACT_POOL])  # the filtered graph walk; small pools ranked exactly
@pytest.mark.parametrize("pool", ["all", "hot", "cold"])
def test_above_the_threshold_pools_and_exclusions_hold_and_recall_is_high(engine, pool, exact_pool, monkeypatch):
    monkeypatch.setattr(knn, "EXACT_POOL", exact_pool)
    catalogue, model = _knn(engine, 100)
    assert catalogue.approximate and hasattr(catalogue.search_index(), "hnsw")
    hot = model.hot_mask
    rng = np.random.default_rng(2)
    recalls = []
    for _ in range(30):
        history = rng.integers(0, N, 3).tolist()
        exclude = set(rng.integers(0, N, 200).tolist()) | set(history)
        items, scores = model.recommend(Query(history=history, pool=pool, exclude=exclude), 20)
        allowed = np.ones(N, bool) if pool == "all" else (hot.copy() if pool == "hot" else ~hot)
        allowed[list(exclude)] = False
        assert len(items) == min(20, int(allowed.sum()))
        assert allowed[items].all(), "an excluded or out-of-pool track came back"
        assert np.all(np.diff(scores) <= 1e-6)
        exact = _exact_ranking(catalogue, model.vectors[history].mean(0), allowed, 20)
        recalls.append(len(set(items.tolist()) & set(exact)) / len(exact))
    assert np.mean(recalls) >= 0.95


def test_the_engine_serves_through_the_graph_and_keeps_the_session_out(engine):
    _knn(engine, 100)
    for track_id in (11, 12, 13):
        engine.record(track_id, "complete")
    result = engine.suggest(20, k=30)
    shown = [s.track.id for s in result.items]
    assert len(shown) == 30 and not {11, 12, 13, 20} & set(shown)
    cold = engine.suggest(pool="cold", k=30)
    played = engine.store.played_track_ids()
    assert cold.items and not played & {s.track.id for s in cold.items}


def test_the_graph_is_saved_reloaded_and_rebuilt_when_damaged_or_stale(engine, tmp_path):
    catalogue, _ = _knn(engine, 100)
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    path = catalogue.graph_path(folder)
    assert path.exists()

    def reload() -> Catalogue:
        fresh = Catalogue.load(engine.store, "mfcc", "1", folder=folder)
        fresh.approximate_above = 100
        return fresh

    assert reload()._current_graph() is not None  # read back from the file, not built again
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    damaged = reload()
    assert damaged._current_graph() is None  # not trusted...
    graph = damaged.search_index(wait=True)  # ...built again, without a traceback
    assert hasattr(graph, "hnsw") and graph.ntotal == N
    damaged.save(folder)
    assert reload()._current_graph() is not None
    # A file that holds other vectors for the same tracks (say, an older analysis) is not used.
    other = reload()
    other.vectors = other.vectors[::-1].copy()
    other._unit = None
    other._known_prefix = None  # these are no longer the vectors of the cache file beside the graph
    assert other._read_graph(folder) is None
    # ...nor when they come from a cache file written since, beside which the graph was not.
    other.save(tmp_path / "elsewhere")
    assert other._read_graph(folder) is None


def test_a_graph_that_cannot_be_built_leaves_the_exact_search_answering(engine, monkeypatch):
    import faiss

    def no_memory(*args):
        raise MemoryError("no room for the graph")

    monkeypatch.setattr(faiss, "IndexHNSWFlat", no_memory)
    catalogue = engine.catalogue()
    catalogue.approximate_above = 100
    index = catalogue.search_index(wait=True)
    assert not hasattr(index, "hnsw") and index.ntotal == N
    assert "could not be built" in catalogue.graph_error
    assert len(engine.suggest(3, k=10).items) == 10


def test_a_catalogue_without_vectors_saves_and_loads(tmp_path):
    # An indexer that finds every track claimed by another one saves an empty catalogue.

    store = Store.open(tmp_path / "lib.db")
    folder = tmp_path / "indexes"
    empty = Catalogue.load(store, "mfcc", "1", folder=folder)
    assert len(empty) == 0
    empty.save(folder)
    assert len(Catalogue.load(store, "mfcc", "1", folder=folder)) == 0


def test_doctor_checks_the_graphs_and_rebuilds_a_damaged_one(engine, monkeypatch, capsys):
    import json

    from mrs_tui import catalogue as catalogue_module
    from mrs_tui.cli import main

    monkeypatch.setattr(catalogue_module, "APPROXIMATE_ABOVE", 100)
    catalogue, _ = _knn(engine, 100)
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    graph = catalogue.graph_path(folder)
    db = str(engine.store.path)

    def doctor(*flags) -> dict[str, str]:
        main(["--db", db, "doctor", "--json", *flags])
        return {f["name"]: f["state"] for f in json.loads(capsys.readouterr().out)["findings"] if f["kind"] == "graph"}

    assert doctor("--check-only") == {graph.name: "ok"}
    data = bytearray(graph.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    graph.write_bytes(bytes(data))
    leftover = folder / f"{graph.stem}.123.456.tmp"
    leftover.write_bytes(b"half a graph")
    assert doctor("--check-only") == {graph.name: "stale", leftover.name: "unfinished"}
    assert doctor("--rebuild") == {graph.name: "ok", leftover.name: "ok"}
    assert not leftover.exists()
    assert catalogue.graph_file_matches(folder)  # rebuilt for the same vectors
    assert doctor("--check-only") == {graph.name: "ok"}

    # A library that shrank below the threshold searches exactly: its old graph is an orphan.
    monkeypatch.setattr(catalogue_module, "APPROXIMATE_ABOVE", 20_000)
    assert doctor("--check-only") == {graph.name: "orphan"}
    doctor()
    assert not graph.exists() and not graph.with_name(graph.name + ".json").exists()


class _CountingBlake2b:
    """hashlib as the catalogue module sees it, counting the bytes it hashes."""

    def __init__(self):
        import hashlib

        self.real = hashlib
        self.hashed = 0

    def blake2b(self, data=b"", **kwargs):
        counter, real = self, self.real.blake2b(data, **kwargs)

        class Digest:
            def update(self, chunk):
                counter.hashed += memoryview(chunk).nbytes
                real.update(chunk)

            def hexdigest(self):
                return real.hexdigest()

        self.hashed += memoryview(data).nbytes
        return Digest()


def _age(path, seconds: float = 60.0) -> None:
    """Make `path` look written a while ago (its change time cannot be set: the ledger checks it too)."""
    import os
    import time

    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_start_after_a_full_check_does_not_hash_the_cache_and_graph_again(engine, monkeypatch):
    from mrs_tui import catalogue as catalogue_module
    from mrs_tui import checked_files

    monkeypatch.setattr(checked_files, "QUIET_NS", 0)  # the change time is fresh in a test
    catalogue, _ = _knn(engine, 100)
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    cache, graph = Catalogue.cache_path(folder, "mfcc", "1"), catalogue.graph_path(folder)

    def load(counter):
        monkeypatch.setattr(catalogue_module, "hashlib", counter)
        fresh = Catalogue.load(engine.store, "mfcc", "1", folder=folder)
        fresh.approximate_above = 100
        found = fresh._current_graph()
        return fresh, found

    first_counter = _CountingBlake2b()
    _, found = load(first_counter)
    assert found is not None
    assert first_counter.hashed >= cache.stat().st_size // 2 + graph.stat().st_size  # checked whole, once
    second_counter = _CountingBlake2b()
    second, found = load(second_counter)
    assert found is not None and found.ntotal == N
    assert second_counter.hashed < 64 * N  # only the track ids (8 bytes each) for the graph's facts
    assert second._unit is None  # nor compared vector by vector
    assert [s.track.id for s in engine.suggest(3, k=10).items]

    # Damage written since is caught: the file's identity moved on (its times, here set apart
    # explicitly since a coarse file-system clock could give a write in the same tick the same time).
    for path in (cache, graph):
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
        _age(path, 30)
    monkeypatch.setattr(catalogue_module, "hashlib", _CountingBlake2b().real)
    assert Catalogue.read_cache(cache, "mfcc", "1") is None
    rebuilt = Catalogue.load(engine.store, "mfcc", "1", folder=folder)
    rebuilt.approximate_above = 100
    assert rebuilt._current_graph() is None


def test_a_file_written_moments_ago_is_not_noted_as_checked(engine):
    from mrs_tui import checked_files

    catalogue = engine.catalogue()
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    cache = Catalogue.cache_path(folder, "mfcc", "1")
    assert Catalogue.read_cache(cache, "mfcc", "1") is not None
    # A second write in the same clock tick could leave its times as they are: not trusted yet.
    assert not checked_files.was_checked(cache, str(np.load(cache)["checksum"]))


def test_doctor_reads_the_files_whole_whatever_the_ledger_says(engine, monkeypatch, capsys):
    import json

    from mrs_tui import catalogue as catalogue_module
    from mrs_tui.cli import main

    monkeypatch.setattr(catalogue_module, "APPROXIMATE_ABOVE", 100)
    catalogue, _ = _knn(engine, 100)
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    for path in (Catalogue.cache_path(folder, "mfcc", "1"), catalogue.graph_path(folder)):
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
    monkeypatch.setattr(catalogue_module, "was_checked", lambda path, digest: True)  # a ledger that lies
    main(["--db", str(engine.store.path), "doctor", "--json", "--check-only"])
    states = {f["kind"]: f["state"] for f in json.loads(capsys.readouterr().out)["findings"] if f["kind"] != "model"}
    assert states["cache"] == "damaged" and states["graph"] == "stale"


def _full_reads(store, monkeypatch) -> list[int]:
    """Record the `since_change` of every read of a model's vectors (-1: the whole table, a rebuild)."""
    reads: list[int] = []
    real = store.embedding_matrix

    def spying(backend, version, *, since_change=-1):
        reads.append(since_change)
        return real(backend, version, since_change=since_change)

    monkeypatch.setattr(store, "embedding_matrix", spying)
    return reads


def test_a_track_re_analysed_or_gone_retires_its_graph_node_instead_of_rebuilding(engine, monkeypatch):
    from mrs_tui.item_graph import ItemGraph
    from mrs_tui.store import EmbeddingRow

    catalogue, _ = _knn(engine, 100)
    graph = catalogue._graph
    store = engine.store
    # Re-analysed: one track before the two that leave, one after them (its item moves down).
    reanalysed, missing, dropped, later = (int(t) for t in catalogue.track_ids[[5, 40, 700, 1200]])
    new_vector = catalogue.vectors[900] + 0.01  # somewhere else in the space now
    later_vector = catalogue.vectors[100] - 0.01
    reads = _full_reads(store, monkeypatch)
    store.put_embeddings([EmbeddingRow(reanalysed, "mfcc", "1", new_vector)])
    store.put_embeddings([EmbeddingRow(later, "mfcc", "1", later_vector)])
    store.update_track(missing, status="missing")
    store.delete_embeddings(dropped)

    engine.catalogue()  # the engine's refresh
    assert -1 not in reads  # no rebuild from the whole table
    assert len(catalogue) == N - 2 and catalogue._graph is graph  # the same graph, its nodes retired
    assert catalogue.index_of[reanalysed] == 5 and np.array_equal(catalogue.vector(reanalysed), new_vector)
    assert catalogue.index_of[later] == 1198 and np.array_equal(catalogue.vector(later), later_vector)
    fresh = Catalogue("mfcc", "1")
    fresh.rebuild(store)  # what reading the whole table gives: the same items, in the same order
    assert np.array_equal(fresh.track_ids, catalogue.track_ids) and np.array_equal(fresh.vectors, catalogue.vectors)
    assert np.array_equal(fresh.unit, catalogue.unit)
    index = catalogue.search_index()
    assert isinstance(index, ItemGraph) and index.ntotal == len(catalogue) and index.nodes == N + 2

    gone = {missing, dropped}
    for seed in (reanalysed, int(catalogue.track_ids[3]), int(catalogue.track_ids[1000])):
        shown = [s.track.id for s in engine.suggest(seed, k=30).items]
        assert len(shown) == 30 and not gone & set(shown)
    for track, vector in ((reanalysed, new_vector), (later, later_vector)):
        _, labels = index.search(l2_normalize(vector)[None, :], 5)
        assert catalogue.track_ids[labels[0][0]] == track  # found by its new vector, as its item

    # Recall against exact search over today's vectors, with an exclusion filtered inside the walk.
    rng = np.random.default_rng(4)
    recalls = []
    for _ in range(30):
        profile = catalogue.unit[rng.integers(0, len(catalogue), 3)].mean(0)
        allowed = np.ones(len(catalogue), bool)
        allowed[:50] = False
        import faiss

        excluded = np.arange(50, dtype=np.int64)
        params = faiss.SearchParametersHNSW()
        params.efSearch = index.hnsw.efSearch
        params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(len(excluded), faiss.swig_ptr(excluded)))
        _, got = index.search(l2_normalize(profile)[None, :], 20, params=params)
        assert not set(got[0].tolist()) & set(range(50))
        recalls.append(len(set(got[0].tolist()) & set(_exact_ranking(catalogue, profile, allowed, 20))) / 20)
    assert np.mean(recalls) >= 0.95

    # Saved and read back with its retired nodes: the same answers.
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    reloaded = Catalogue.load(store, "mfcc", "1", folder=folder)
    reloaded.approximate_above = 100
    read_back = reloaded._current_graph()
    assert isinstance(read_back, ItemGraph) and read_back.nodes == N + 2
    query = l2_normalize(catalogue.unit[:8].mean(0))[None, :]
    assert np.array_equal(read_back.search(query, 20)[1], index.search(query, 20)[1])
    assert reloaded.graph_file_matches(folder)


def test_once_many_nodes_are_retired_the_graph_is_built_afresh(engine, monkeypatch):
    catalogue, _ = _knn(engine, 100)
    reads = _full_reads(engine.store, monkeypatch)
    for track_id in catalogue.track_ids[:200]:  # more than a tenth of the nodes
        engine.store.update_track(int(track_id), status="missing")
    engine.catalogue()
    assert -1 not in reads and len(catalogue) == N - 200
    assert catalogue._graph is None  # not walked with that many dead ends
    assert not hasattr(catalogue.search_index(), "hnsw") or catalogue.search_index().ntotal == N - 200
    graph = catalogue.search_index(wait=True)
    assert hasattr(graph, "hnsw") and graph.ntotal == N - 200 and catalogue._graph_nodes is None
    shown = {s.track.id for s in engine.suggest(int(catalogue.track_ids[0]), k=30).items}
    assert not shown & {int(t) for t in np.arange(1, 201)}


def test_a_node_map_that_does_not_fit_its_graph_is_refused():
    from mrs_tui.item_graph import decode_nodes, encode_nodes, item_nodes

    # Nodes 1, 2 and 4 retired; item 1 was re-analysed: its new node is the last one.
    node_items = np.array([0, -1, -1, 2, -1, 3, 4, 1], np.int64)
    text = encode_nodes(node_items)
    assert np.array_equal(decode_nodes(text, len(node_items), 5), node_items)
    assert np.array_equal(item_nodes(node_items), [0, 7, 3, 5, 6])
    with pytest.raises(ValueError):
        decode_nodes(text, len(node_items) + 1, 5)  # another graph
    with pytest.raises(ValueError):
        decode_nodes(encode_nodes(np.array([0, 1, 1, -1])), 4, 3)  # item 1 twice, item 2 nowhere


def test_a_checked_cache_is_mapped_and_what_changes_in_memory_never_reaches_the_file(engine, monkeypatch):
    from mrs_tui import checked_files
    from mrs_tui.store import EmbeddingRow

    monkeypatch.setattr(checked_files, "QUIET_NS", 0)
    catalogue = engine.catalogue()
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    cache = Catalogue.cache_path(folder, "mfcc", "1")
    original = catalogue.vectors.copy()
    assert not isinstance(Catalogue.read_cache(cache, "mfcc", "1").vectors, np.memmap)  # checked whole
    mapped = Catalogue.read_cache(cache, "mfcc", "1")
    assert isinstance(mapped.vectors, np.memmap)  # checked before: mapped, not read
    track = int(mapped.track_ids[3])
    engine.store.put_embeddings([EmbeddingRow(track, "mfcc", "1", np.full(mapped.dim, 7.0, np.float32))])
    mapped.refresh(engine.store)  # a re-analysis written over the mapped row, in memory only
    assert np.all(mapped.vector(track) == 7.0)
    on_disk = Catalogue.read_cache(cache, "mfcc", "1", trust_checked=False)
    assert on_disk is not None and np.array_equal(on_disk.vectors, original)


def test_a_cache_behind_the_database_is_saved_on_load_with_its_graph(engine, monkeypatch):
    from mrs_tui import catalogue as catalogue_module
    from mrs_tui.store import EmbeddingRow

    monkeypatch.setattr(catalogue_module, "APPROXIMATE_ABOVE", 100)
    catalogue, _ = _knn(engine, 100)
    folder = engine.data_folder / "indexes"
    catalogue.save(folder)
    track = int(catalogue.track_ids[10])
    new_vector = catalogue.vectors[20] + 0.5
    engine.store.put_embeddings([EmbeddingRow(track, "mfcc", "1", new_vector)])  # written by another process

    def load() -> Catalogue:
        return Catalogue.load(engine.store, "mfcc", "1", folder=folder)

    caught_up = load()
    assert np.array_equal(caught_up.vector(track), new_vector)
    # The next start finds both files as the database is: nothing to catch up, nothing to compare.
    again = load()
    assert again.last_change == engine.store.change_count()
    graph = again._current_graph()
    assert graph is not None and again._unit is None
    _, labels = graph.search(l2_normalize(new_vector)[None, :], 1)
    assert again.track_ids[labels[0][0]] == track
