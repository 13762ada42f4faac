"""A real one-node Ray cluster (2 CPUs, 100 MB object store): same vectors and same evaluation grid
as the single-process path.

Equality: Ray runs a 1-CPU task or actor with one BLAS/OpenMP thread (OMP_NUM_THREADS=1), and
a different thread count changes the summation order inside numpy's and torch's reductions. So
the cluster's vectors equal the single-process path's bit for bit when that path runs with one
thread too (checked for `mfcc`), and to 1e-6 against the default multi-threaded run (checked
for `mfcc` and a tiny random-weight MERT). The grid's summaries are compared exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional extra mrs-tui[ray] (the dev extra installs it)")

from backends import load_backend  # noqa: E402
from mrs_tui.cluster import ClusterOptions  # noqa: E402
from mrs_tui.cluster.grid import RayCells  # noqa: E402
from mrs_tui.cluster.indexing import BackendPlan, ClusterIndexer  # noqa: E402
from mrs_tui.engine import Engine  # noqa: E402
from mrs_tui.errors import UserError  # noqa: E402
from mrs_tui.evaluation import synthetic  # noqa: E402
from mrs_tui.evaluation.datasets import Dataset, VectorSource  # noqa: E402
from mrs_tui.evaluation.runner import EvalSettings, Row, resolve_rows, run_grid  # noqa: E402
from mrs_tui.indexing import Indexer  # noqa: E402
from mrs_tui.library import scan  # noqa: E402
from mrs_tui.store import Store  # noqa: E402
from tests.cluster_helpers import LocalCluster  # noqa: E402
from tests.conftest import make_library  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    test_cluster = LocalCluster([2])
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in test_cluster.env.items() if k.startswith("RAY_")})
    try:
        ray.init(address=test_cluster.address, log_to_driver=False)
        yield test_cluster
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        test_cluster.stop()
    assert test_cluster.leftovers() == [], "Ray processes outlived the test cluster"


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cluster-music")
    make_library(root, per_style=2, seconds=3.0, broken=True)
    return root


def scanned_store(path: Path, music: Path) -> Store:
    store = Store.open(path)
    scan(store, music)
    return store


def vectors_by_path(store: Store, backend: str, version: str) -> dict[str, np.ndarray]:
    paths = {t.id: t.path for t in store.tracks()}
    ids, matrix, _ = store.embedding_matrix(backend, version)
    return {paths[int(i)]: row for i, row in zip(ids, matrix, strict=True)}


def recording_writes(store: Store) -> list[tuple[int, str]]:
    """Every (track, backend) the store is asked to write, in order (the real write still happens)."""
    writes: list[tuple[int, str]] = []
    original = store.put_embeddings

    def put_embeddings(rows):
        rows = list(rows)
        writes.extend((r.track_id, r.backend) for r in rows)
        return original(rows)

    store.put_embeddings = put_embeddings
    return writes


def single_thread_index(db: Path, music: Path) -> None:
    """`mrs-tui index` in one process with one BLAS thread, as a 1-CPU Ray worker runs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mrs_tui", "--db", str(db), "index", str(music), "--backend", "mfcc", "-q"]
    subprocess.run(command, env=env, check=True, capture_output=True)


def test_mfcc_on_the_cluster_stores_the_single_process_vectors(cluster, music, tmp_path):
    local = Engine(scanned_store(tmp_path / "local.db", music))
    local.index(["mfcc"])
    single_thread_index(tmp_path / "one-thread.db", music)
    remote = Engine(scanned_store(tmp_path / "remote.db", music))
    writes = recording_writes(remote.store)
    seen = []
    report = remote.index(["mfcc"], cluster=ClusterOptions(cluster.address), progress=seen.append)

    version = local.version("mfcc")
    expected, got = vectors_by_path(local.store, "mfcc", version), vectors_by_path(remote.store, "mfcc", version)
    with Store.open(tmp_path / "one-thread.db") as one_thread:
        same_threads = vectors_by_path(one_thread, "mfcc", version)
    assert len(expected) == 6 and got.keys() == expected.keys() == same_threads.keys()
    for path, vector in expected.items():
        assert np.array_equal(got[path], same_threads[path]), path
        np.testing.assert_allclose(got[path], vector, rtol=1e-6, atol=1e-6, err_msg=path)
    # Unreadable files fail the same way, with the same reasons, and are never sent to a model: three
    # are refused by the scan, the truncated one by the decoding task on the worker.
    failed = {t.path: t.error for t in local.store.tracks(status="failed")}
    assert len(failed) == 4 and {t.path: t.error for t in remote.store.tracks(status="failed")} == failed
    assert [Path(p).name for p, _ in report.failed] == ["truncated.flac"]
    assert sorted(writes) == sorted(set(writes)) and len(writes) == 6  # the driver wrote each track once
    assert report.embedded == {"mfcc": 6} and report.decode_seconds > 0
    assert seen[-1].done == seen[-1].total == 7 and [(n.decoded, n.embedded) for n in seen[-1].nodes] == [(7, 6)]
    # The suggestion index was rebuilt from what the cluster stored.
    seed = next(t for t in remote.store.tracks(status="ok"))
    assert len(remote.suggest(seed.id, k=3).items) == 3
    # Nothing left to do: a second run does not even reach the cluster.
    assert remote.index(["mfcc"], cluster=ClusterOptions("ray://unreachable:1")).total == 0


def test_a_tiny_mert_on_the_cluster_matches_the_single_process_path(cluster, music, tmp_path):
    from backends.testing import write_random_checkpoint

    weights = write_random_checkpoint("mert", tmp_path / "mert", variant="330m", seed=7)
    local_store = scanned_store(tmp_path / "local.db", music)
    Indexer(local_store, [load_backend("mert", weights)], batch_size=4).run()
    remote_store = scanned_store(tmp_path / "remote.db", music)
    plan = BackendPlan.of("mert", weights=str(weights))
    report = ClusterIndexer(remote_store, [plan], ClusterOptions(cluster.address), batch_size=4).run()

    expected = vectors_by_path(local_store, "mert", plan.version)
    got = vectors_by_path(remote_store, "mert", plan.version)
    assert report.embedded == {"mert": 6} and got.keys() == expected.keys()
    for path, vector in expected.items():
        np.testing.assert_allclose(got[path], vector, rtol=1e-6, atol=1e-6, err_msg=path)


def test_missing_weights_on_the_workers_are_one_clear_error(cluster, music, tmp_path):
    store = scanned_store(tmp_path / "remote.db", music)
    plan = BackendPlan.of("mert", weights=str(tmp_path / "nowhere"))
    with pytest.raises(UserError) as caught:
        ClusterIndexer(store, [plan], ClusterOptions(cluster.address)).run()
    assert "could not load the mert backend" in str(caught.value)
    assert "mrs-tui backends fetch mert" in caught.value.fix
    assert store.embedding_counts() == {}


@pytest.fixture(scope="module")
def grid_data():
    return synthetic.generate(n_users=24, n_items=120, n_plays=1800, seed=5)


def dataset_of(data) -> Dataset:
    sources = {name: VectorSource(name, data.item_keys, lambda m=m: m) for name, m in data.vectors.items()}
    return Dataset("generated", "log", data.log, sources, default_contexts="users")


def test_the_evaluation_grid_on_ray_equals_the_local_grid(cluster, grid_data):
    settings = EvalSettings(ks=(10, 50), recommenders=["knn", "shallow"], quick=True, model_seed=3)
    local = run_grid(dataset_of(grid_data), settings)
    progress = []
    remote = run_grid(
        dataset_of(grid_data),
        settings,
        cells=RayCells(ClusterOptions(cluster.address)),
        progress=lambda done, total, message: progress.append((done, total)),
    )
    assert [(c.backend, c.recommender) for c in remote.cells] == [(c.backend, c.recommender) for c in local.cells]
    # 2 backends x (knn, shallow), then the popular, random and elsa baselines once each
    assert len(remote.cells) == 7 and all(c.error is None for c in remote.cells)
    for mine, theirs in zip(local.cells, remote.cells, strict=True):
        for part, metrics in mine.parts.items():
            for name, summary in metrics.items():
                other = theirs.parts[part][name]
                assert (other.mean, other.half_width, other.n) == (summary.mean, summary.half_width, summary.n)
    assert remote.split == local.split and progress[-1] == (7, 7)


def test_a_cell_that_fails_on_a_worker_is_reported_in_its_row_and_the_others_complete(cluster, grid_data):
    from mrs_tui.evaluation.runner import prepare_split

    dataset = dataset_of(grid_data)
    settings = EvalSettings(ks=(10,), recommenders=["knn"])
    split = prepare_split(dataset, settings, ["good"])
    plan = [("good", row) for row in resolve_rows(["knn"]) if not row.baseline]
    plan.insert(0, ("good", Row("broken", "no-such-recommender", {}, False)))
    cells, cancelled = RayCells(ClusterOptions(cluster.address))(
        dataset, split, plan, settings, lambda done, message: None, None
    )
    assert not cancelled and [c.recommender for c in cells] == ["broken", "knn"]
    assert "unknown recommender" in cells[0].error
    assert cells[1].error is None and cells[1].parts["hot"]["NDCG@10"].n > 0
