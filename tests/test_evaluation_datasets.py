"""`mrs-tui eval` on every kind of dataset: research logs, split folders, the history, logs vs the library."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backends import embedding_version
from mrs_tui.cli import main
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import Dataset, VectorSource
from mrs_tui.evaluation.runner import EvalSettings, prepare_split, run_grid
from mrs_tui.store import Store


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(n_users=30, n_items=180, n_plays=3000, seed=5)


def in_memory(data) -> Dataset:
    sources = {name: VectorSource(name, data.item_keys, lambda m=m: m) for name, m in data.vectors.items()}
    return Dataset("generated", "log", data.log, sources, default_contexts="users")


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def write_research_files(folder, data):
    """A Music4All-Onion-style TSV with string ids, and shuffled .npy rows with their id list."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "userid_trackid_timestamp.tsv"
    lines = ["user_id\ttrack_id\ttimestamp"]
    lines += [
        f"user_{u:03d}\ttrk{i}\t{iso(t)}"  # ids sort as in memory: same tie order
        for u, i, t in zip(data.log.users, data.log.items, data.log.timestamps, strict=True)
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    order = np.random.default_rng(1).permutation(len(data.item_keys))
    ids = folder / "ids.txt"
    ids.write_text("\n".join(f"trk{data.item_keys[i]}" for i in order) + "\n", encoding="utf-8")
    paths = []
    for name, matrix in data.vectors.items():
        path = folder / f"{name}.npy"
        np.save(path, matrix[order])
        paths.append(path)
    return log, ids, paths


def metric_table(cells, part="hot"):
    return {(c["backend"], c["recommender"]): c["parts"].get(part, {}) for c in cells}  # no cold part: no cold scores


def test_research_log_with_shuffled_embeddings_matches_the_in_memory_run(tmp_path, capsys, data):
    log, ids, (good, poor) = write_research_files(tmp_path / "m4a", data)
    db, out_csv = tmp_path / "lib.db", tmp_path / "results.csv"
    args = ["--db", db, "eval", "--log", log, "--embeddings", good, "--embeddings", poor, "--track-ids", ids]
    code, out, err = run(capsys, *args, "-k", "10,50", "--recommenders", "knn", "--json", "--csv", out_csv)
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"]["kind"] == "log" and result["split"]["protocol"] == "users"
    assert result["settings"]["ks"] == [10, 50]
    # The id list puts each shuffled row back on its track: identical numbers to the direct run.
    direct = run_grid(in_memory(data), EvalSettings(ks=(10, 50), recommenders=["knn"]))
    expected = metric_table([c.to_dict() for c in direct.cells])
    got = metric_table(result["cells"])
    for key, metrics in expected.items():
        for name, summary in metrics.items():
            assert got[key][name]["mean"] == pytest.approx(summary["mean"]), (key, name)
    assert out_csv.read_text().startswith("run_id,dataset,part,backend")
    # Stored: listed, and printable later.
    code, out, _ = run(capsys, "--db", db, "eval", "--runs", "--json")
    runs = json.loads(out)
    assert len(runs) == 1 and runs[0]["dataset"] == "log userid_trackid_timestamp.tsv"
    code, out, _ = run(capsys, "--db", db, "eval", "--show", runs[0]["id"])
    assert code == 0 and "HitRate@10" in out and "good    knn" in out


def test_parquet_log_with_integer_ids_and_row_index_embeddings(tmp_path, capsys, data):
    # The paper's layout: integer track ids that are rows of the matrix, epoch-millisecond times.
    table = pa.table(
        {
            "user_id": pa.array(data.log.users.astype(np.int64)),
            "track_id": pa.array(data.log.items.astype(np.int64)),
            "timestamp": pa.array((data.log.timestamps * 1000).astype(np.int64)),
        }
    )
    pq.write_table(table, tmp_path / "plays.pqt")
    np.save(tmp_path / "good.npy", data.vectors["good"])
    code, out, err = run(
        capsys, "--db", tmp_path / "x.db", "eval", "--log", tmp_path / "plays.pqt", "--embeddings",
        tmp_path / "good.npy", "--recommenders", "knn", "--json", "--no-store",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    direct = run_grid(in_memory(data), EvalSettings(recommenders=["knn"], backends=["good"]))
    assert metric_table(result["cells"])[("good", "knn")]["NDCG@50"]["mean"] == pytest.approx(
        direct.cell("good", "knn").parts["hot"]["NDCG@50"].mean
    )
    assert result["split"] == direct.split
    code, out, _ = run(capsys, "--db", tmp_path / "x.db", "eval", "--runs", "--json")
    assert json.loads(out) == []  # --no-store


def write_split_dir(folder, data):
    """The paper's published split format, made from our own split of `data`."""
    split = prepare_split(in_memory(data), EvalSettings(), ["good"])
    folder.mkdir()

    def save(name, users, items, stamps, counts):
        pq.write_table(
            pa.table(
                {
                    "user_id": pa.array(np.asarray(users, np.int64)),
                    "track_id": pa.array(np.asarray(items, np.int64)),
                    "timestamp": pa.array(np.asarray(stamps, np.int64) * 1_000_000, pa.timestamp("us")),
                    "count": pa.array(np.asarray(counts, np.int64)),
                }
            ),
            folder / f"{name}.pqt",
        )

    tr = split.train
    save(
        "train",
        split.train_context_keys[tr.contexts],
        split.item_keys[tr.items].astype(np.int64),
        tr.timestamps,
        tr.weights,
    )
    for name, cases in (("val", split.val), ("hot_test", split.hot), ("cold_test", split.cold)):
        users = [c.key for c in cases for _ in c.relevant]
        items = [int(split.item_keys[i]) for c in cases for i in c.relevant]
        save(name, users, items, [split.test_date] * len(items), [1] * len(items))
    return split


def test_split_dir_reproduces_the_split_and_the_numbers(tmp_path, capsys, data):
    split = write_split_dir(tmp_path / "split", data)
    np.save(tmp_path / "good.npy", data.vectors["good"])
    code, out, err = run(
        capsys, "--db", tmp_path / "x.db", "eval", "--split-dir", tmp_path / "split", "--embeddings",
        tmp_path / "good.npy", "--recommenders", "knn", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    stats = result["split"]
    assert stats["protocol"] == "premade"
    for key in ("train_rows", "train_contexts", "items", "hot_items", "val_contexts", "hot_test_contexts"):
        assert stats[key] == split.stats()[key], key
    assert stats["cold_test_contexts"] == split.stats()["cold_test_contexts"]
    direct = run_grid(in_memory(data), EvalSettings(recommenders=["knn"], backends=["good"]))
    for part in ("hot", "cold"):
        for name in ("HitRate@50", "Recall@50", "NDCG@50"):
            assert metric_table(result["cells"], part)[("good", "knn")][name]["mean"] == pytest.approx(
                direct.cell("good", "knn").parts[part][name].mean
            )


@pytest.fixture
def listener_db(tmp_path):
    """One listener's library and a year of history, analysed with mfcc (vectors made up)."""
    mine = synthetic.generate(n_users=6, n_items=200, n_plays=2500, seed=9, backends={"mfcc": (24, 0.4)})
    db = tmp_path / "me.db"
    with Store.open(db) as store:
        synthetic.write_history(store, mine, versions={"mfcc": embedding_version("mfcc")})
    return db, mine


def test_own_history_gets_a_session_table_with_intervals(listener_db, capsys):
    db, _ = listener_db
    code, out, err = run(capsys, "--db", db, "eval", "--recommenders", "knn", "-q")
    assert code == 0, err
    assert "local history · sessions as contexts" in out
    assert re.search(r"^mfcc +knn +\d\.\d{3} ± \d\.\d{3}", out, re.M)
    code, out, _ = run(capsys, "--db", db, "eval", "--runs", "--json")
    run_id = json.loads(out)[0]["id"]
    code, out, _ = run(capsys, "--db", db, "eval", "--show", run_id, "--json")
    result = json.loads(out)
    assert result["split"]["protocol"] == "sessions" and result["split"]["hot_test_contexts"] >= 10
    knn = metric_table(result["cells"])[("mfcc", "knn")]["NDCG@50"]
    rnd = metric_table(result["cells"])[("-", "random")]["NDCG@50"]
    assert knn["mean"] > rnd["mean"] and knn["half_width"] > 0


def test_external_log_against_the_library_by_relative_path(listener_db, tmp_path, capsys):
    db, mine = listener_db
    # Another listener's log: paths relative to the library root, plus one file we do not have.
    with Store.open(db) as store:
        path_of = {t.id: t.path for t in store.tracks()}
    first = min(path_of)
    lines = ["user,track,time"]
    for u, i, t in zip(mine.log.users, mine.log.items, mine.log.timestamps, strict=True):
        relative = path_of[first + int(i)].removeprefix("/synthetic/")
        lines.append(f"{u},{relative},{int(t)}")
    lines.append(f"0,elsewhere/unknown.flac,{int(mine.log.timestamps[0])}")
    log = tmp_path / "friends.csv"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "--db", db, "eval", "--log", log, "--recommenders", "knn", "--json", "--no-store")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"]["kind"] == "library-log" and result["split"]["protocol"] == "users"
    assert any("1 of" in note and "not in the library" in note for note in result["dataset"]["notes"])
    assert result["split"]["train_contexts"] == 6
    assert metric_table(result["cells"])[("mfcc", "knn")]["NDCG@50"]["mean"] > 0
    # The same log with library track ids and an explicit root gives the same split.
    ids_log = tmp_path / "ids.tsv"
    ids_log.write_text(
        "user_id\ttrack_id\ttimestamp\n"
        + "".join(
            f"{u}\t{first + int(i)}\t{int(t)}\n"
            for u, i, t in zip(mine.log.users, mine.log.items, mine.log.timestamps, strict=True)
        ),
        encoding="utf-8",
    )
    code, out, err = run(capsys, "--db", db, "eval", "--log", ids_log, "--recommenders", "knn", "--json", "--no-store")
    assert code == 0, err
    assert json.loads(out)["split"] == result["split"]


def test_bad_input_is_a_one_line_error(tmp_path, capsys, data):
    log, ids, (good, _poor) = write_research_files(tmp_path / "m4a", data)
    db = tmp_path / "x.db"
    broken = tmp_path / "no_time.tsv"
    broken.write_text("user_id\ttrack_id\nu\tt\n", encoding="utf-8")
    code, _, err = run(capsys, "--db", db, "eval", "--log", broken, "--embeddings", good, "--track-ids", ids)
    assert code == 2 and "no timestamp column" in err and err.count("\n") == 1
    short_ids = tmp_path / "short.txt"
    short_ids.write_text("trk1\n", encoding="utf-8")
    code, _, err = run(capsys, "--db", db, "eval", "--log", log, "--embeddings", good, "--track-ids", short_ids)
    assert code == 2 and "has 180 rows but the track-id list has 1 ids" in err
    code, _, err = run(capsys, "--db", db, "eval", "--embeddings", good)
    assert code == 2 and "--embeddings needs a play log" in err
    code, _, err = run(capsys, "--db", db, "eval", "--log", log, "--embeddings", good)
    assert code == 2 and "no played track has a vector in good" in err and "--track-ids" in err
    code, _, err = run(capsys, "--db", db, "eval", "--log", log, "--embeddings", good, "--test-date", "May 1")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = run(capsys, "--db", db, "eval")
    assert code == 2 and "no backend has analysed the library yet" in err


def test_timestamps_in_the_formats_logs_come_in(tmp_path):
    from mrs_tui.errors import UserError
    from mrs_tui.evaluation.datasets import read_play_log

    noon = 1549022400.0  # 2019-02-01 12:00 UTC
    rows = {
        "iso.tsv": "user_id\ttrack_id\ttimestamp\nu\tt\t2019-02-01 12:00:00\n",
        "iso_zone.csv": "user_id,track_id,timestamp\nu,t,2019-02-01T14:00:00+02:00\n",
        "epoch.csv": f"user,track,time\nu,t,{int(noon)}\n",
        "epoch_ms.csv": f"user,track,time\nu,t,{int(noon * 1000)}\n",
    }
    for name, text in rows.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        log = read_play_log(tmp_path / name)
        assert log.timestamps.tolist() == [noon], name
        assert log.items.tolist() == ["t"] and log.counts.tolist() == [1.0]
    (tmp_path / "days.csv").write_text("user_id,track_id,timestamp\nu,t,2019-02-01\n", encoding="utf-8")
    assert read_play_log(tmp_path / "days.csv").timestamps.tolist() == [noon - 12 * 3600]
    (tmp_path / "odd.csv").write_text("user_id,track_id,timestamp\nu,t,01/02/2019\n", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read the time '01/02/2019'"):
        read_play_log(tmp_path / "odd.csv")
