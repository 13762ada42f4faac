"""The startup rule: the app and the CLI load without torch, transformers, librosa, faiss or ray,
and the headless core never imports Textual."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "transformers", "librosa", "faiss", "numba", "sklearn", "ray")


def imported_after(code: str) -> set[str]:
    probe = textwrap.dedent(
        f"""
        import sys
        {code}
        print("MODULES=" + ",".join(sorted(m.split(".")[0] for m in sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("MODULES="))
    return set(line.removeprefix("MODULES=").split(","))


@pytest.mark.parametrize(
    "code",
    [
        "import mrs_tui.tui.app",
        "import mrs_tui.cli; mrs_tui.cli.build_parser()",
        "import backends; backends.list_specs(); [backends.backend_status(s.name) for s in backends.list_specs()]",
        "import recommenders; list(recommenders.REGISTRY)",
    ],
)
def test_no_heavy_imports_at_startup(code):
    loaded = imported_after(code)
    assert not loaded & set(HEAVY), f"{code!r} imported {sorted(loaded & set(HEAVY))}"


@pytest.mark.parametrize(
    "module",
    ["mrs_tui.engine", "mrs_tui.store", "mrs_tui.library", "mrs_tui.indexing", "backends", "recommenders"],
)
def test_core_does_not_import_textual(module):
    assert "textual" not in imported_after(f"import {module}")


def test_listing_backends_on_the_command_line_imports_no_backend():
    loaded = imported_after("from mrs_tui.cli import main; main(['backends', '--json'])")
    assert not loaded & set(HEAVY)
