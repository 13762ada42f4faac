"""Where things live: the user's data, cache and config folders, and the data mrs-tui ships.

This module and `mrs_tui.errors` are all that `backends/` and `recommenders/` may import from
`mrs_tui` (the import-linter contracts in pyproject.toml hold that), so it stays small and
imports nothing heavy.

The folders come from platformdirs (the XDG base directories on Linux, so ``XDG_DATA_HOME``
and friends move them). Environment variables move each one on its own, which is how tests
and several libraries side by side keep apart:

- ``MRS_TUI_DB``: the SQLite file (``--db`` on the command line wins over it)
- ``MRS_TUI_CONFIG``: the TOML settings file (``--config`` wins over it)
- ``MRS_TUI_CACHE``: downloaded weights, the demo library
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "mrs-tui"

# The top-level data/ folder of a source checkout (and so of an editable install); a wheel
# carries the same files inside the package, copied there by setup.py's build step.
_INSTALLED_DATA = Path(__file__).with_name("_data")
_SOURCE_DATA = Path(__file__).resolve().parent.parent / "data"


def _dirs():
    # platformdirs is imported when a folder is first asked for, not at startup.
    from platformdirs import PlatformDirs

    return PlatformDirs(APP_NAME, appauthor=False)


def data_dir() -> Path:
    return Path(_dirs().user_data_dir)


def cache_dir() -> Path:
    override = os.environ.get("MRS_TUI_CACHE")
    return Path(override) if override else Path(_dirs().user_cache_dir)


def config_path() -> Path:
    override = os.environ.get("MRS_TUI_CONFIG")
    return Path(override) if override else Path(_dirs().user_config_dir) / "config.toml"


def default_db_path() -> Path:
    override = os.environ.get("MRS_TUI_DB")
    return Path(override) if override else data_dir() / "library.db"


def shipped_data_dir() -> Path:
    """The folder of small static files mrs-tui ships (see data/README.md)."""
    return _INSTALLED_DATA if _INSTALLED_DATA.is_dir() else _SOURCE_DATA


def shipped_data(*parts: str) -> Path:
    """A file mrs-tui ships, e.g. ``shipped_data("config", "default.toml")``."""
    path = shipped_data_dir().joinpath(*parts)
    if not path.is_file():
        from mrs_tui.errors import UserError

        raise UserError(
            f"{path}: a file mrs-tui ships is missing", "reinstall mrs-tui (the installation is incomplete)"
        )
    return path
