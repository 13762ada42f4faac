"""Where things live and the user's settings.

Paths follow the XDG base directories. Environment variables move each of them,
which is how tests and several libraries side by side keep apart:

- ``MRS_TUI_DB``: the SQLite file (``--db`` on the command line wins over it)
- ``MRS_TUI_CONFIG``: the TOML settings file
- ``MRS_TUI_CACHE``: downloaded weights, the demo library
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mrs_tui.errors import UserError

APP_NAME = "mrs-tui"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_NAME


def cache_dir() -> Path:
    override = os.environ.get("MRS_TUI_CACHE")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / APP_NAME


def config_path() -> Path:
    override = os.environ.get("MRS_TUI_CONFIG")
    return Path(override) if override else _xdg("XDG_CONFIG_HOME", ".config") / APP_NAME / "config.toml"


def default_db_path() -> Path:
    override = os.environ.get("MRS_TUI_DB")
    return Path(override) if override else data_dir() / "library.db"


@dataclass
class Settings:
    """User settings; every field can be set in ``config.toml`` under ``[mrs-tui]``."""

    backend: str = ""  # empty: the best ready backend (musicnn when its weights are present, else mfcc)
    recommender: str = "knn"
    suggestions: int = 20
    preview_seconds: float = 30.0
    # Where an embedding excerpt is cut from a full-length track: "middle" (default) or "start"
    # (the paper's scripts read the first 30 s of 30-s Music4All clips, which are mid-track previews).
    clip_position: str = "middle"
    session_gap_minutes: float = 30.0
    retrain_after_plays: int = 25
    # How much the selected track counts against the session in a suggestion list (0..1): the
    # list ranks by this blend of the two rankings, so one liked track cannot drown the seed.
    seed_weight: float = 0.5
    index_batch_size: int = 8
    extra_backends: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or config_path()
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid TOML ({exc})", "fix or delete the file") from exc
        section = raw.get(APP_NAME, raw)
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in known:
                raise UserError(
                    f"{path}: unknown setting {key!r}",
                    f"known settings: {', '.join(sorted(known))}",
                )
            values[name] = value
        if values.get("clip_position", "middle") not in ("middle", "start"):
            raise UserError(f"{path}: clip_position must be 'middle' or 'start'")
        return cls(**values)

    def save(self, path: Path | None = None) -> None:
        import tomli_w

        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps({APP_NAME: asdict(self)}), encoding="utf-8")
