"""Two real Ray nodes on this machine (`ray start --head` and `ray start --address`, one CPU each)
and `mrs-tui index --ray` as a separate driver process: work on both nodes, killed workers,
a killed driver, and a library only the driver can see.

"Written once" is observed in the database itself: triggers log every insert or update of an
embedding row, so a track stored twice (even with the same vector) shows up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is the optional extra mrs-tui[ray] (the dev extra installs it)")

from backends import embedding_version, load_backend  # noqa: E402
from mrs_tui.cluster import ClusterOptions  # noqa: E402
from mrs_tui.engine import Engine  # noqa: E402
from mrs_tui.indexing import Indexer  # noqa: E402
from mrs_tui.library import scan  # noqa: E402
from mrs_tui.store import Store  # noqa: E402
from tests.cluster_helpers import LocalCluster  # noqa: E402
from tests.conftest import make_library  # noqa: E402

TRACKS = 18


@pytest.fixture(scope="module")
def cluster():
    # The second node is labelled for the embedding actor, so its model is the one killed below.
    nodes = LocalCluster([1, 1], second_node_resources='{"embedder": 1}')
    try:
        yield nodes
    finally:
        nodes.stop()
    assert nodes.leftovers() == [], "Ray processes outlived the test cluster"


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nodes-music")
    make_library(root, styles=("techno", "piano", "chiptune"), per_style=TRACKS // 3, seconds=3.0, formats=(".wav",))
    return root


def logged_database(path: Path) -> Path:
    """A library database whose embedding writes are logged by triggers."""
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE test_write_log (track_id INTEGER, backend TEXT);
            CREATE TRIGGER test_log_insert AFTER INSERT ON embeddings
              BEGIN INSERT INTO test_write_log VALUES (NEW.track_id, NEW.backend); END;
            CREATE TRIGGER test_log_update AFTER UPDATE ON embeddings
              BEGIN INSERT INTO test_write_log VALUES (NEW.track_id, NEW.backend); END;
            """
        )
    return path


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def stored(db: Path) -> int:
    return query(db, "SELECT count(*) FROM embeddings WHERE vector IS NOT NULL")[0][0]


def index_command(db: Path, folder: Path, address: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mrs_tui",
        "--db",
        str(db),
        "index",
        str(folder),
        "--backend",
        "mfcc",
        "--ray",
        address,
        "--json",
        *extra,
    ]


def start_driver(cluster: LocalCluster, command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, what: str, timeout: float = 240.0, driver: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver ended before {what}: {driver.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def finish(driver: subprocess.Popen) -> dict:
    out, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.fixture
def connected(cluster, monkeypatch):
    """This test process as the driver of the two-node cluster."""
    import ray

    for key, value in cluster.env.items():
        if key.startswith("RAY_"):
            monkeypatch.setenv(key, value)
    ray.init(address=cluster.address, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_work_spreads_over_both_nodes_and_killed_workers_lose_nothing(cluster, connected, music, tmp_path):
    """The embedding actor asks for the resource only the second node has, so the head decodes; the
    second node's worker processes, the loaded model among them, are killed after two tracks are stored."""
    db = logged_database(tmp_path / "library.db")
    engine = Engine(Store.open(db))
    engine.scan(music)
    second = cluster.nodes[1]
    killed: dict[int, str] = {}

    def kill_the_second_nodes_workers_once() -> None:
        while not killed and not finished.is_set():
            names = {pid: _name(pid) for pid in second.worker_processes()}
            if stored(db) >= 2 and any(name.startswith("ray::_Embedder") for name in names.values()):
                for pid in names:
                    os.kill(pid, signal.SIGKILL)
                killed.update(names)
            time.sleep(0.05)

    finished = threading.Event()
    killer = threading.Thread(target=kill_the_second_nodes_workers_once)
    killer.start()
    try:
        options = ClusterOptions(cluster.address, max_in_flight=4, actor_resources={"embedder": 1})
        report = engine.index(["mfcc"], cluster=options)
    finally:
        finished.set()
        killer.join()

    assert any(name.startswith("ray::_Embedder") for name in killed.values()), killed
    assert report.embedded == {"mfcc": TRACKS} and not report.failed
    labels = {n.node: (n.decoded, n.embedded) for n in report.nodes}
    assert len(labels) == 2, labels  # both machines did part of the work
    assert sum(e for _, e in labels.values()) == TRACKS and sum(d for d, _ in labels.values()) == TRACKS
    writes = query(db, "SELECT track_id, count(*) FROM test_write_log GROUP BY track_id")
    assert len(writes) == TRACKS and {count for _, count in writes} == {1}


def test_a_killed_driver_resumes_from_the_store_and_recomputes_nothing(cluster, music, tmp_path):
    db = logged_database(tmp_path / "library.db")
    driver = start_driver(cluster, index_command(db, music, cluster.address))
    wait_until(lambda: stored(db) >= 6, "some tracks to be stored", driver=driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = dict(
        (track, (created, vector))
        for track, created, vector in query(db, "SELECT track_id, created_at, vector FROM embeddings")
    )
    assert 6 <= len(before) < TRACKS

    result = finish(start_driver(cluster, index_command(db, music, cluster.address)))

    assert result["index"]["embedded"] == {"mfcc": TRACKS - len(before)}  # only what was missing
    after = {t: (c, v) for t, c, v in query(db, "SELECT track_id, created_at, vector FROM embeddings")}
    assert len(after) == TRACKS and all(after[t] == before[t] for t in before)  # untouched
    writes = query(db, "SELECT track_id, count(*) FROM test_write_log GROUP BY track_id")
    assert len(writes) == TRACKS and {count for _, count in writes} == {1}


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) to hide the library from the workers")
def test_ship_audio_indexes_a_folder_only_the_driver_can_see(cluster, music, tmp_path):
    """The driver runs in its own mount namespace, where a tmpfs holding the library is mounted
    on an empty folder; the Ray nodes, started outside it, see that folder empty."""
    source = tmp_path / "source"
    source.mkdir()
    for path in sorted(music.rglob("*.wav"))[:4]:
        shutil.copy(path, source / path.name)
    private = tmp_path / "private"
    private.mkdir()

    def in_private_namespace(command: list[str]) -> list[str]:
        script = 'mount -t tmpfs tmpfs "$1" && cp -a "$2"/. "$1"/ && shift 2 && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(private),
            str(source),
            *command,
        ]

    db = tmp_path / "private.db"
    refused = subprocess.run(
        in_private_namespace(index_command(db, private, cluster.address)),
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "2 of 2 cluster nodes cannot read" in refused.stderr and "--ship-audio" in refused.stderr
    assert query(db, "SELECT count(*) FROM embeddings") == [(0,)]
    assert list(private.iterdir()) == []  # outside the namespace the folder is still empty

    shipped = finish(
        start_driver(cluster, in_private_namespace(index_command(db, private, cluster.address, "--ship-audio")))
    )
    assert shipped["index"]["embedded"] == {"mfcc": 4}

    # The same vectors as this process computes from the same bytes (to 1e-6: one thread there, two here).
    version = embedding_version("mfcc")
    with Store.open(db) as private_store:
        shipped_vectors = {
            Path(t.path).name: private_store.embedding(t.id, "mfcc", version) for t in private_store.tracks()
        }
    here = Store.memory()
    scan(here, source)
    Indexer(here, [load_backend("mfcc")]).run()
    assert len(shipped_vectors) == 4
    for track in here.tracks():
        expected = here.embedding(track.id, "mfcc", version).vector
        np.testing.assert_allclose(shipped_vectors[Path(track.path).name].vector, expected, rtol=1e-6, atol=1e-6)
    assert list((cluster.temp / "home" / "cache" / "mrs-tui" / "cluster-audio").iterdir()) == []


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""
