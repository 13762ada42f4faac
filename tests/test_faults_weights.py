"""Fault injection on backend weights: refused pickles leave nothing behind, and "ready" means readable."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import backends
from mrs_tui.cli import main


def status_of(capsys, name: str) -> str:
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["backends"] if isinstance(rows, dict) else rows
    return next(r["status"] for r in rows if r["name"] == name)


def test_a_pickle_refused_by_fetch_leaves_nothing_that_looks_ready(tmp_path, capsys):
    from backends.testing import write_random_checkpoint

    checkpoint = write_random_checkpoint("music2vec", tmp_path / "clean", seed=1)
    folder = tmp_path / "with-objects"
    folder.mkdir()
    (folder / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    state = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    state["training_args"] = argparse.Namespace(lr=1e-4)  # a Python object: needs full unpickling
    torch.save(state, folder / "pytorch_model.bin")

    assert main(["backends", "fetch", "music2vec", "--from", str(folder)]) != 0
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (backends.weights_dir("music2vec") / "pytorch_model.bin").exists()
    assert status_of(capsys, "music2vec") != "ready"


@pytest.mark.parametrize("damage", ["truncated", "text", "folder"])
def test_weights_that_are_not_what_their_name_says_are_not_ready(capsys, damage):
    spec = backends.get_spec("musicnn")
    target = backends.weights_dir("musicnn") / spec.weights_files[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    if damage == "truncated":
        target.write_bytes((1000).to_bytes(8, "little") + b'{"a"')
    elif damage == "text":
        target.write_text("<html>404 Not Found</html>")
    else:
        target.mkdir()
    assert status_of(capsys, "musicnn") != "ready"
