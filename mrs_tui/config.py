"""The user's settings: typed, checked, from the config file and the environment.

Sources, later ones winning: the defaults below, the TOML file (``[mrs-tui]`` section;
``data/config/default.toml`` lists every setting with its comment), then one environment
variable per setting, ``MRS_TUI_`` and the name in capitals (``MRS_TUI_SUGGESTIONS=40``).
The command line (``--backend``, ``--recommender``) wins over all of them.

A value of the wrong type or out of range, or a key nobody knows, is a one-line `UserError`
naming the key and where it came from. Plain dataclasses with explicit checks rather than
pydantic-settings: pydantic costs more import time than the app may spend before it paints.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from mrs_tui.errors import UserError
from mrs_tui.paths import APP_NAME, config_path, shipped_data

ENV_PREFIX = "MRS_TUI_"


@dataclass(frozen=True)
class _Rule:
    kind: type  # str, int, float or bool
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    exclusive: bool = False  # minimum itself not allowed
    maximum: float | None = None

    def check(self, value: object) -> tuple[object, str | None]:
        """The value as the setting's type and None, or the value and why it is refused."""
        if self.kind is dict:  # text to text (action names to keys)
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
            ):
                return value, 'is not a table of text (e.g. like = "L")'
            return dict(value), None
        if self.kind is list:  # of text (folders)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
                return value, "is not a list of text"
            return list(value), None
        if self.kind is bool:
            return value, None if isinstance(value, bool) else "is not true or false"
        if self.kind is str:
            if not isinstance(value, str):
                return value, "is not text"
            if self.choices and value not in self.choices:
                return value, f"must be one of {', '.join(map(repr, self.choices))}"
            return value, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, "is not a whole number" if self.kind is int else "is not a number"
        if self.kind is int and not isinstance(value, int):
            return value, "is not a whole number"
        value = self.kind(value)
        if self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum):
            return value, f"must be {'more than' if self.exclusive else 'at least'} {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return value, f"must be at most {self.maximum:g}"
        return value, None

    def from_text(self, text: str) -> object:
        """An environment variable's text as the setting's type (checked afterwards)."""
        if self.kind is str:
            return text
        if self.kind is list:
            return [part for part in text.split(os.pathsep) if part.strip()]
        if self.kind is dict:  # "like=L;quit=ctrl+q"
            pairs = [part.split("=", 1) for part in text.split(";") if part.strip()]
            return {k.strip(): v.strip() for k, v in pairs} if all(len(p) == 2 for p in pairs) else text
        if self.kind is bool:
            return {"true": True, "false": False}.get(text.strip().lower(), text)
        try:
            return self.kind(text.strip())
        except ValueError:
            return text


def _setting(default: object, **rule) -> object:
    """A field whose type is its default's, checked by a `_Rule` declared beside it."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"rule": _Rule(type(default), **rule)})
    return field(default=default, metadata={"rule": _Rule(type(default), **rule)})


@dataclass
class Settings:
    """User settings; every field can be set in ``config.toml`` under ``[mrs-tui]``."""

    backend: str = _setting("")  # empty: the best ready backend (musicnn when its weights are present, else mfcc)
    recommender: str = _setting("knn")
    suggestions: int = _setting(20, minimum=1)
    preview_seconds: float = _setting(30.0, minimum=0, exclusive=True)
    # Where an embedding excerpt is cut from a full-length track: "middle" (default) or "start"
    # (the paper's scripts read the first 30 s of 30-s Music4All clips, which are mid-track previews).
    clip_position: str = _setting("middle", choices=("middle", "start"))
    session_gap_minutes: float = _setting(30.0, minimum=0, exclusive=True)
    retrain_after_plays: int = _setting(25, minimum=1)
    # How much the selected track counts against the session in a suggestion list (0..1): the
    # list ranks by this blend of the two rankings, so one liked track cannot drown the seed.
    seed_weight: float = _setting(0.5, minimum=0, maximum=1)
    index_batch_size: int = _setting(8, minimum=1)
    # Where tracks are analysed: "" (this machine) or a Ray cluster: "auto", "local", "ray://HOST:PORT".
    ray: str = _setting("")
    # Folders the app scans and watches when it is opened without one (`mrs-tui` alone); a
    # folder given on the command line is opened instead. In the environment: joined by ":".
    library_folders: list = _setting([])  # noqa: RUF009 (a field with a default factory)
    # Keys: action name -> key(s), e.g. {like = "L", quit = "ctrl+q"} (the `[mrs-tui.keys]`
    # table); the names are checked against the app's actions when it starts (mrs_tui/tui/keymap.py).
    keys: dict = _setting({})  # noqa: RUF009 (a field with a default factory)
    # One of Textual's themes ("textual-dark", "nord", "gruvbox", ...), checked when the app starts.
    theme: str = _setting("textual-dark")
    # Playback, queue and radio (mrs_tui/player.py, radio.py); diversity rules: mrs_tui/diversity.py
    playback: str = _setting("preview", choices=("preview", "full"))
    radio_refill_below: int = _setting(3, minimum=1)
    radio_batch: int = _setting(5, minimum=1)
    diversity_artist_cap: int = _setting(2, minimum=1)
    diversity_album_cap: int = _setting(1, minimum=1)
    diversity_window: int = _setting(10, minimum=1)
    diversity_no_duplicates: bool = _setting(True)
    diversity_near_duplicate_cosine: float = _setting(0.98, minimum=0)
    diversity_recent_hours: float = _setting(2.0, minimum=0)
    diversity_exploration: str = _setting("greedy", choices=("greedy", "sample"))
    diversity_top_k: int = _setting(50, minimum=1)
    diversity_temperature: float = _setting(0.3, minimum=0)

    def __post_init__(self) -> None:
        for name in _RULES:
            setattr(self, name, _checked(name, getattr(self, name), "settings"))

    @classmethod
    def load(cls, path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
        """Defaults, then the file at `path` (default: `config_path()`), then the environment."""
        path = path or config_path()
        environ = os.environ if environ is None else environ
        values = _read_file(path) if path.exists() else {}
        for name, rule in _RULES.items():
            variable = ENV_PREFIX + name.upper()
            if variable in environ:
                values[name] = _checked(name, rule.from_text(environ[variable]), variable, env=True)
        settings = cls(**values)
        settings.source = path
        return settings

    source = None  # the config file these settings were loaded from (None: built in code)

    def as_toml(self) -> str:
        """These settings as the text of a config file."""
        import tomli_w

        return tomli_w.dumps({APP_NAME: asdict(self)})


_RULES: dict[str, _Rule] = {f.name: f.metadata["rule"] for f in fields(Settings)}
_DEFAULT_FACTORIES = {f.name for f in fields(Settings) if f.default_factory is not MISSING}


def default_config_text() -> str:
    """The commented default config file mrs-tui ships."""
    return shipped_data("config", "default.toml").read_text(encoding="utf-8")


def _checked(name: str, value: object, where: str, env: bool = False) -> object:
    value, problem = _RULES[name].check(value)
    if problem:
        default = (
            getattr(Settings(), name) if name in _DEFAULT_FACTORIES else Settings.__dataclass_fields__[name].default
        )
        example = f"{where}={default}" if env else f"{name} = {default!r}"
        raise UserError(f"{where}: {name} = {value!r} {problem}", f"e.g. {example}")
    return value


def _read_file(path: Path) -> dict[str, object]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})", "fix or delete the file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})", "check the file's permissions") from exc
    section = raw.get(APP_NAME, raw)
    stray = sorted(set(raw) - {APP_NAME}) if APP_NAME in raw else []
    if stray:
        raise UserError(f"{path}: {stray[0]!r} is outside the [{APP_NAME}] section", f"move it under [{APP_NAME}]")
    if not isinstance(section, dict):
        raise UserError(f"{path}: [{APP_NAME}] must be a table of settings", "see `mrs-tui config --default`")
    values: dict[str, object] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name not in _RULES:
            raise UserError(f"{path}: unknown setting {key!r}", f"known settings: {', '.join(sorted(_RULES))}")
        values[name] = _checked(name, value, str(path))
    return values


def save_settings(path: Path, values: dict[str, object]) -> None:
    """Write `values` into the config file at `path`, keeping every other line (comments too).

    A key already set is changed where it stands; a new one goes at the end of the
    ``[mrs-tui]`` section (or of a file without sections). Each value is checked first and the
    file is read back before it replaces the old one: a refused value changes nothing.
    """
    import tomli_w

    for name, value in values.items():
        if name not in _RULES:
            raise UserError(f"unknown setting {name!r}", f"known settings: {', '.join(sorted(_RULES))}")
        _checked(name, value, str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc})", "fix or delete the file") from exc
    header = next((i for i, line in enumerate(lines) if line.strip() == f"[{APP_NAME}]"), None)
    has_tables = any(line.strip().startswith("[") for line in lines)
    if header is None and (has_tables or not lines):
        lines += ([""] if lines else []) + [f"[{APP_NAME}]"]
        header = len(lines) - 1
    start = 0 if header is None else header + 1
    end = next((i for i in range(start, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    for name, value in values.items():
        line = tomli_w.dumps({name: value}).strip()
        spelled = (name, name.replace("_", "-"))
        at = next(
            (i for i in range(start, end) if lines[i].split("=", 1)[0].strip() in spelled and "=" in lines[i]), None
        )
        if at is not None:
            lines[at] = line
            continue
        insert = end
        while insert > start and not lines[insert - 1].strip():
            insert -= 1
        lines.insert(insert, line)
        end += 1
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    try:
        staged.write_text(text, encoding="utf-8")
        _read_file(staged)  # the whole file still reads as settings
        staged.replace(path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}", "check the folder's permissions") from exc
    finally:
        staged.unlink(missing_ok=True)
