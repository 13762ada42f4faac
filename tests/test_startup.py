"""Import hygiene: the app and the CLI start without the heavy libraries, listing backends or
recommenders imports none of them, and the headless core never imports Textual.

One list, one test: each entry runs in a fresh interpreter and names what must stay out of
`sys.modules`. The static side of the same rules is the import-linter contracts in
pyproject.toml; this checks what really loads, lazy imports included.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backends import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "librosa", "faiss", "numba", "sklearn")
# The app and the parser paint or answer before numpy is needed at all.
FIRST_PAINT = (*HEAVY, "numpy")
BACKEND_MODULES = tuple(sorted({spec.target.partition(":")[0] for spec in REGISTRY.values()}))


def modules_in(*packages: str, leaving_out: tuple[str, ...] = ()) -> list[str]:
    """Every module of these packages, found on disk so that a new module is covered at once."""
    found = []
    for package in packages:
        found.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if not info.name.startswith(leaving_out):
                found.append(info.name)
    return sorted(found)


# The layers above the headless core; everything else, backend modules included, loads without Textual.
ABOVE_CORE = ("mrs_tui.tui", "mrs_tui.commands", "mrs_tui.cli", "mrs_tui.__main__")
HEADLESS_CORE = modules_in("mrs_tui", "backends", "recommenders", leaving_out=ABOVE_CORE)
# mrs_tui's own modules, the CLI included, import heavy libraries only inside the functions that need them.
LIGHT = modules_in("mrs_tui", leaving_out=("mrs_tui.tui", "mrs_tui.__main__"))

IMPORT_RULES = [
    pytest.param("import mrs_tui.tui.app", FIRST_PAINT, id="app"),
    pytest.param("import mrs_tui.cli; mrs_tui.cli.build_parser()", (*FIRST_PAINT, "textual"), id="cli-parser"),
    pytest.param(
        "from mrs_tui.cli import main; main(['backends', '--json'])", HEAVY + BACKEND_MODULES, id="cli-backends"
    ),
    pytest.param(
        "import backends; [backends.backend_status(s.name) for s in backends.list_specs()]",
        HEAVY + BACKEND_MODULES,
        id="backend-listing",
    ),
    pytest.param(
        "import recommenders; [recommenders.get_spec(n) for n in recommenders.REGISTRY]",
        HEAVY,
        id="recommender-listing",
    ),
    pytest.param("import " + ", ".join(LIGHT), (*HEAVY, "textual"), id="mrs_tui-without-the-app"),
    pytest.param("import " + ", ".join(HEADLESS_CORE), ("textual",), id="headless-core"),
]


def loaded_after(code: str) -> list[str]:
    probe = textwrap.dedent(
        """
        import contextlib, io, json, sys
        with contextlib.redirect_stdout(io.StringIO()):
            exec(sys.argv[1])
        print(json.dumps(sorted(sys.modules)))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", probe, code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(("code", "kept_out"), IMPORT_RULES)
def test_imports_stay_in_their_layer(code, kept_out):
    loaded = loaded_after(code)
    leaked = sorted(m for m in loaded if any(m == out or m.startswith(out + ".") for out in kept_out))
    assert not leaked, f"{code[:80]!r} imported {leaked}"


def test_the_module_lists_are_found_on_disk():
    assert {"mrs_tui.engine", "mrs_tui.store.tracks", "backends.musicnn", "recommenders.knn"} <= set(HEADLESS_CORE)
    assert not [m for m in HEADLESS_CORE if m.startswith(ABOVE_CORE)]
    assert {"mrs_tui.cli", "mrs_tui.commands.evaluate", "mrs_tui.engine"} <= set(LIGHT)
