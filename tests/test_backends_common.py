"""What every backend shares, through the command line a user types.

- `mrs-tui backends` lists all ten backends with status, licence and dimension (that it
  imports neither torch nor any backend module to do it is checked in tests/test_startup.py).
- Every registered target imports (a typo fails the suite, it is not skipped), and every
  backend with weights has a tiny random checkpoint (`backends.testing`).
- For every backend with weights, from its tiny random checkpoint: `backends fetch NAME --from
  FOLDER` installs it, the listing then says "ready", and `embed --backend NAME` prints a
  vector of the model's width.
- Every backend given another backend's checkpoint fails with one line, not a traceback and
  not a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from backends import REGISTRY, Backend, BackendError, gpu_visible
from backends.testing import WRITERS, write_random_checkpoint
from mrs_tui.cli import main
from tests.backend_helpers import make_clips

ROOT = Path(__file__).resolve().parents[1]
WEIGHTED = [name for name, spec in REGISTRY.items() if spec.needs_weights]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def backend_class(name: str):
    """The backend's class; a registered target that does not import is an error, never a skip."""
    module_name, _, class_name = REGISTRY[name].target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Tiny checkpoints, written once per module and only when asked for."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            written = write_random_checkpoint(name, tmp_path_factory.mktemp(name), size="tiny", seed=1)
            # Some backends return the folder, others the main file in it.
            made[name] = written if written.is_dir() else written.parent
        return made[name]

    return get


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> list[Path]:
    import soundfile

    folder = tmp_path_factory.mktemp("audio")
    paths = []
    for index, clip in enumerate(make_clips(22050, 4.0, count=2, seed=5)):
        path = folder / f"clip{index}.wav"
        soundfile.write(path, clip, 22050)
        paths.append(path)
    return paths


def test_listing_shows_every_backend_with_its_status(capsys):
    code, out, _ = run(capsys, "backends", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == set(REGISTRY) and len(rows) == 10
    for name, row in rows.items():
        assert row["dim"] == REGISTRY[name].dim > 0
        assert row["weights_license"] and row["status"] in ("ready", "weights missing", "needs a GPU")
    assert rows["mfcc"]["status"] == "ready"
    assert rows["music2vec"]["status"] == "weights missing"
    assert "mrs-tui backends fetch music2vec" in rows["music2vec"]["detail"]
    if not gpu_visible():
        assert rows["jukebox"]["status"] == "needs a GPU"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_target_imports_as_that_backend(name):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.spec is REGISTRY[name]


@pytest.mark.parametrize("name", WEIGHTED)
def test_fetch_is_the_base_class_one_and_refuses_unknown_options(name):
    # Backends customise fetching through its hooks (install_from, download, after_fetch).
    cls = backend_class(name)
    assert cls.fetch.__func__ is Backend.fetch.__func__
    with pytest.raises(BackendError, match="no option"):
        cls.fetch(variantt="95m")


def test_every_backend_with_weights_has_a_random_test_checkpoint():
    # Without one, the per-backend tests below would have nothing to load.
    assert set(WRITERS) == set(WEIGHTED)


@pytest.mark.parametrize(
    ("target", "error"),
    [("backends.mul:MuleBackend", ModuleNotFoundError), ("backends.mule:MuleBakend", AttributeError)],
)
def test_a_typo_in_a_registered_target_fails_the_tests(target, error, monkeypatch):
    monkeypatch.setitem(REGISTRY, "mule", dataclasses.replace(REGISTRY["mule"], target=target))
    with pytest.raises(error):
        backend_class("mule")


def test_listing_as_text_shows_every_backend_with_licence_and_speed(capsys):
    code, out, _ = run(capsys, "backends")
    assert code == 0
    for name, spec in REGISTRY.items():
        line = next(line for line in out.splitlines() if line[1:].startswith(name + " "))
        assert str(spec.dim) in line and spec.weights_license in line
    assert "mrs-tui backends fetch mert" in out


@pytest.mark.parametrize("name", WEIGHTED)
def test_fetch_from_folder_then_embed(name, tiny_checkpoints, audio_files, capsys):
    folder = tiny_checkpoints(name)
    code, out, err = run(capsys, "backends", "fetch", name, "--from", str(folder), "--json")
    assert code == 0, err
    assert Path(json.loads(out)["path"]).is_dir()

    code, out, _ = run(capsys, "backends", "--json")
    row = next(r for r in json.loads(out) if r["name"] == name)
    if REGISTRY[name].needs_gpu and not gpu_visible():
        assert row["status"] == "needs a GPU"
        code, _, err = run(capsys, "embed", str(audio_files[0]), "--backend", name)
        assert code != 0 and err.startswith("mrs-tui: error: ") and err.count("\n") == 1
        assert "GPU" in err
        return
    assert row["status"] == "ready"

    code, out, err = run(capsys, "embed", *map(str, audio_files), "--backend", name, "--json")
    assert code == 0, err
    first, second = json.loads(out)
    vectors = np.array([first["embedding"], second["embedding"]], np.float32)
    assert first["backend"] == name and first["dim"] == vectors.shape[1] > 0
    assert np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])


@pytest.mark.parametrize("name", WEIGHTED)
def test_other_backends_checkpoints_are_refused_in_one_line(name, tiny_checkpoints, audio_files, capsys):
    others = [other for other in WEIGHTED if other != name]
    assert others, "no other backend to take a checkpoint from"
    for other in others:
        folder = tiny_checkpoints(other)
        code, _, err = run(capsys, "embed", str(audio_files[0]), "--backend", name, "--weights", str(folder))
        assert code != 0, f"{name} accepted the {other} checkpoint"
        assert err.startswith("mrs-tui: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["embed", "{audio}", "--backend", "music2vec"], "mrs-tui backends fetch music2vec"),
        (["embed", "{audio}", "--backend", "mert", "--weights", "{tmp}/nowhere"], "does not exist"),
        (["backends", "fetch", "music2vec", "--from", "{tmp}"], "config.json"),
        (["backends", "fetch", "mert"], "offline"),
        (["backends", "fetch", "nosuchmodel"], "unknown backend"),
    ],
)
def test_weights_errors_are_one_line(argv, expected, tmp_path, audio_files, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{audio}", str(audio_files[0])) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code != 0
    assert err.startswith("mrs-tui: error: ") and err.count("\n") == 1, err
    assert expected in err


def test_corrupt_weights_file_is_one_line(tiny_checkpoints, audio_files, tmp_path, capsys):
    folder = tiny_checkpoints("music2vec")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((folder / "config.json").read_bytes())
    (broken / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + bytes(300))
    code, _, err = run(capsys, "embed", str(audio_files[0]), "--backend", "music2vec", "--weights", str(broken))
    assert code != 0 and err.count("\n") == 1 and "pytorch_model.bin" in err


def test_embed_frames_and_paper_mode_through_the_cli(tiny_checkpoints, audio_files, capsys):
    folder = tiny_checkpoints("music2vec")
    assert run(capsys, "backends", "fetch", "music2vec", "--from", str(folder))[0] == 0
    code, out, err = run(capsys, "embed", str(audio_files[0]), "--backend", "music2vec", "--frames", "--json")
    assert code == 0, err
    (entry,) = json.loads(out)
    frames = np.array(entry["frames"], np.float32)
    assert frames.shape == (199, entry["dim"])  # 4 s at 50 frames per second
    np.testing.assert_allclose(frames.mean(axis=0), entry["embedding"], rtol=1e-4, atol=1e-5)

    code, out, err = run(capsys, "embed", str(audio_files[0]), "--backend", "music2vec", "--paper-compat", "--json")
    assert code == 0, err
    (paper,) = json.loads(out)
    assert paper["version"].endswith("+paper") and paper["version"] != entry["version"]
    assert not np.allclose(paper["embedding"], entry["embedding"], rtol=1e-3, atol=1e-4)
