"""The headless command line: JSON output for scripts, one-line errors, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3

import pytest

from mrs_tui.cli import main
from tests.conftest import copy_database, isolated, make_library


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def indexed_once(tmp_path_factory):
    """`mrs-tui index` run once per module on a library with broken files; its report and database."""
    base = tmp_path_factory.mktemp("cli")
    root = base / "music"
    made = make_library(root, styles=("techno", "piano"), per_style=3, seconds=2.0, broken=True)
    out = io.StringIO()
    with isolated(base / "home"), contextlib.redirect_stdout(out):
        code = main(["--db", str(base / "lib.db"), "index", str(root), "--json"])
    assert code == 0
    return base / "lib.db", root, made, json.loads(out.getvalue())


@pytest.fixture
def indexed(indexed_once, tmp_path):
    """This test's own copy of the indexed database, beside the module's library."""
    db, root, made, report = indexed_once
    return copy_database(db, tmp_path / "lib.db"), root, made, report


def test_index_json_reports_new_and_failed_files(indexed):
    _db, root, _made, data = indexed
    assert data["folder"] == str(root.resolve())
    assert data["scan"]["added"] == 6 + 4
    failed = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in data["scan"]["failed"] + data["index"]["failed"]}
    assert {"empty.mp3", "notes.ogg", "cover.mp3", "truncated.flac"} <= set(failed)
    assert data["index"]["embedded"] == {"mfcc": 6}


def test_suggest_by_path_and_by_id(indexed, capsys):
    db, _root, made, _ = indexed
    seed = made["piano"][0]
    code, out, _ = run(capsys, "--db", str(db), "suggest", "--seed", str(seed), "-k", "2", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["seed"]["path"] == str(seed.resolve())
    assert len(data["suggestions"]) == 2
    assert all(s["artist"] == "Hammer & Felt" and s["new"] for s in data["suggestions"])
    code, out, _ = run(capsys, "--db", str(db), "suggest", "--seed", str(data["seed"]["id"]), "-k", "2")
    assert code == 0 and "[new]" in out


def test_history_show_is_empty_then_lists_plays(indexed, capsys):
    db, *_ = indexed
    code, out, _ = run(capsys, "--db", str(db), "history", "show", "--json")
    assert code == 0 and json.loads(out) == []
    from mrs_tui.store import Store

    store = Store.open(db)
    from mrs_tui.history import History

    History(store).record(store.tracks(status="ok")[0].id, "like")
    code, out, _ = run(capsys, "--db", str(db), "history", "show", "--json")
    sessions = json.loads(out)
    assert len(sessions) == 1 and sessions[0]["plays"][0]["event"] == "like"


def test_backends_lists_every_backend_with_status_and_licence(capsys):
    code, out, _ = run(capsys, "backends", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert {
        "mfcc",
        "musicnn",
        "music2vec",
        "mert",
        "musicfm",
        "muq",
        "muq_mulan",
        "encodecmae",
        "mule",
        "jukebox",
    } <= set(rows)
    assert rows["mfcc"]["status"] == "ready"
    assert rows["jukebox"]["needs_gpu"]
    assert all(r["weights_license"] for r in rows.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "{tmp}/no-such-folder"], "does not exist"),
        (["suggest", "--backend", "nonsense"], "unknown backend 'nonsense'"),
        (["suggest", "--recommender", "nonsense"], "unknown recommender"),
        (["suggest", "--seed", "/nowhere/x.mp3"], "not in the library"),
        (["index", "{tmp}", "--backend", "nonsense"], "unknown backend"),
    ],
)
def test_errors_are_one_line_and_non_zero(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _out, err = run(capsys, "--db", str(tmp_path / "lib.db"), *argv)
    assert code != 0
    assert err.startswith("mrs-tui: error: ") and err.count("\n") == 1
    assert message in err


def test_unwritable_database_location_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "--db", str(blocker / "lib.db"), "library")
    assert code != 0 and "--db" in err and err.count("\n") == 1


def test_errors_leave_stored_data_intact(indexed, capsys):
    db, *_ = indexed
    before = sqlite3.connect(db).execute("SELECT count(*) FROM tracks").fetchone()[0]
    code, _, _ = run(capsys, "--db", str(db), "index", str(db.parent / "missing"))
    assert code != 0
    code, _, _ = run(capsys, "--db", str(db), "suggest", "--backend", "nonsense")
    assert code != 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM tracks").fetchone()[0] == before


def test_db_option_and_environment_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRS_TUI_DB", str(tmp_path / "env.db"))
    assert run(capsys, "library")[0] == 0
    assert (tmp_path / "env.db").exists()
    assert run(capsys, "library", "--db", str(tmp_path / "flag.db"))[0] == 0
    assert (tmp_path / "flag.db").exists()


@pytest.mark.slow
def test_demo_creates_a_tagged_library(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--create-only", "--folder", str(tmp_path / "demo"), "--json")
    data = json.loads(out)
    assert code == 0 and data["tracks"] == 24
    code, out, _ = run(capsys, "--db", data["db"], "index", data["folder"], "--json")
    assert json.loads(out)["index"]["embedded"]["mfcc"] == 24


def test_index_with_several_backends_and_a_backend_option(tmp_path, capsys, monkeypatch):
    import backends
    from tests.test_indexing import ENERGY_SPEC, BandEnergyBackend

    monkeypatch.setitem(backends.REGISTRY, "energy", ENERGY_SPEC)
    BandEnergyBackend.calls = []
    root = tmp_path / "music"
    make_library(root, styles=("piano",), per_style=2, seconds=2.0)
    db = str(tmp_path / "lib.db")
    code, out, err = run(capsys, "--db", db, "index", str(root), "--backend", "mfcc,energy", "--json")
    assert code == 0, err
    assert json.loads(out)["index"]["embedded"] == {"mfcc": 2, "energy": 2}
    code, _, err = run(capsys, "--db", db, "suggest", "--backend-option", "nonsense", "-k", "1")
    assert code != 0 and "KEY=VALUE" in err
    code, _, err = run(capsys, "--db", db, "suggest", "--backend", "mfcc", "--backend-option", "flavour=x")
    assert code != 0 and "has no option flavour" in err


def test_index_without_a_folder_scans_every_configured_library_folder(tmp_path, capsys, monkeypatch):
    import os

    first, second = tmp_path / "flac", tmp_path / "mp3"
    make_library(first, styles=("piano",), per_style=2, seconds=2.0)
    make_library(second, styles=("techno",), per_style=1, seconds=2.0)
    db = str(tmp_path / "lib.db")
    monkeypatch.setenv("MRS_TUI_LIBRARY_FOLDERS", "")
    code, _, err = run(capsys, "--db", db, "index")
    assert code == 2 and "library_folders is empty" in err and "mrs-tui index ~/Music" in err
    monkeypatch.setenv("MRS_TUI_LIBRARY_FOLDERS", f"{first}{os.pathsep}{tmp_path / 'gone'}")
    code, _, err = run(capsys, "--db", db, "index")
    assert code == 2 and f"library_folders: {tmp_path / 'gone'} is not a folder" in err
    monkeypatch.setenv("MRS_TUI_LIBRARY_FOLDERS", f"{first}{os.pathsep}{second}")
    code, out, err = run(capsys, "--db", db, "index", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["folders"] == [str(first.resolve()), str(second.resolve())]
    assert data["scan"]["added"] == 3 and data["index"]["embedded"] == {"mfcc": 3}
