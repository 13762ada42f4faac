"""Settings a user writes: checked with one-line errors, overridable from the environment, and
the commented default file mrs-tui ships."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from mrs_tui.cli import main
from mrs_tui.config import Settings, default_config_text
from mrs_tui.errors import UserError
from mrs_tui.paths import cache_dir, config_path, default_db_path


def write_config(folder: Path, body: str) -> Path:
    path = folder / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[mrs-tui]\nsuggestions = "many"\n', "suggestions = 'many' is not a whole number — e.g. suggestions = 20"),
        ("[mrs-tui]\nsuggestions = 0\n", "suggestions = 0 must be at least 1"),
        ("[mrs-tui]\nsuggestions = true\n", "suggestions = True is not a whole number"),
        ("[mrs-tui]\npreview_seconds = -1\n", "preview_seconds = -1.0 must be more than 0"),
        ('[mrs-tui]\nclip_position = "end"\n', "clip_position = 'end' must be one of 'middle', 'start'"),
        ("[mrs-tui]\nbackend = 3\n", "backend = 3 is not text"),
        ("[mrs-tui]\nsugestions = 5\n", "unknown setting 'sugestions' — known settings: backend, clip_position"),
        ("[mrs-tui\n", "not valid TOML"),
        ("suggestions = 5\n[mrs-tui]\nrecommender = 'knn'\n", "'suggestions' is outside the [mrs-tui] section"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_file_and_the_key(tmp_path, body, expected):
    path = write_config(tmp_path, body)
    with pytest.raises(UserError) as caught:
        Settings.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message


def test_the_command_line_reports_a_bad_config_and_exits_2(tmp_path, capsys):
    path = write_config(tmp_path, '[mrs-tui]\nsuggestions = "many"\n')
    assert main(["--config", str(path), "--db", str(tmp_path / "x.db"), "suggest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mrs-tui: error: {path}: suggestions = 'many' is not a whole number — e.g. suggestions = 20"
    assert not (tmp_path / "x.db").exists()


def test_values_of_the_right_kind_load_and_ints_become_floats(tmp_path):
    path = write_config(tmp_path, "[mrs-tui]\nsuggestions = 7\npreview-seconds = 12\nclip_position = 'start'\n")
    settings = Settings.load(path)
    assert (settings.suggestions, settings.preview_seconds, settings.clip_position) == (7, 12.0, "start")
    assert isinstance(settings.preview_seconds, float)


def test_every_setting_can_come_from_the_environment_which_wins_over_the_file(tmp_path):
    path = write_config(tmp_path, "[mrs-tui]\nsuggestions = 7\nrecommender = 'shallow'\n")
    environ = {"MRS_TUI_SUGGESTIONS": "40", "MRS_TUI_PREVIEW_SECONDS": "2.5", "MRS_TUI_CLIP_POSITION": "start"}
    settings = Settings.load(path, environ)
    assert (settings.suggestions, settings.preview_seconds, settings.clip_position) == (40, 2.5, "start")
    assert settings.recommender == "shallow"  # from the file: no variable for it
    every = {f"MRS_TUI_{f.name.upper()}" for f in fields(Settings)}
    values = {
        "backend": "mfcc",
        "recommender": "popular",
        "clip_position": "start",
        "playback": "full",
        "seed_weight": "0.75",
    }
    values |= {"diversity_exploration": "sample", "diversity_no_duplicates": "true", "library_folders": "/a:/b c"}
    values |= {"keys": "like=L; quit = ctrl+q"}
    environ = {var: values.get(var[8:].lower(), "3") for var in every}
    tables = {"library_folders": ["/a", "/b c"], "keys": {"like": "L", "quit": "ctrl+q"}}
    expected = {f.name: type(f.default)(values.get(f.name, 3)) for f in fields(Settings) if f.name not in tables}
    assert asdict(Settings.load(tmp_path / "absent.toml", environ)) == expected | tables


def test_library_folders_are_a_list_of_text(tmp_path):
    path = write_config(tmp_path, "[mrs-tui]\nlibrary_folders = ['~/Music', '/mnt/flac']\n")
    assert Settings.load(path, environ={}).library_folders == ["~/Music", "/mnt/flac"]
    bad = write_config(tmp_path, "[mrs-tui]\nlibrary_folders = '~/Music'\n")
    with pytest.raises(
        UserError, match=r"library_folders = '~/Music' is not a list of text — e.g. library_folders = \[\]"
    ):
        Settings.load(bad, environ={})


def test_a_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MRS_TUI_SUGGESTIONS", "many")
    with pytest.raises(
        UserError, match=r"^MRS_TUI_SUGGESTIONS: suggestions = 'many' .* e\.g\. MRS_TUI_SUGGESTIONS=20$"
    ):
        Settings.load(tmp_path / "absent.toml")


def test_settings_built_in_code_are_checked_too():
    with pytest.raises(UserError, match="index_batch_size = 0 must be at least 1"):
        Settings(index_batch_size=0)


def test_the_shipped_default_config_lists_every_setting_with_its_default():
    text = default_config_text()
    assert tomllib.loads(text) == {"mrs-tui": {}}  # all commented out: loading it changes nothing
    uncommented = "\n".join(
        line.removeprefix("# ") if " = " in line and not line.startswith("# #") else line for line in text.splitlines()
    )
    assert tomllib.loads(uncommented)["mrs-tui"] == asdict(Settings())


def test_config_init_writes_the_default_once_and_config_shows_what_is_in_effect(tmp_path, monkeypatch, capsys):
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("MRS_TUI_CONFIG", str(path))
    assert main(["config", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["config", "--init"]) == 0
    assert path.read_text(encoding="utf-8") == default_config_text()
    path.write_text(path.read_text().replace("# suggestions = 20", "suggestions = 9"))
    assert main(["config", "--init"]) == 2  # never overwrites what the user wrote
    assert "already exists" in capsys.readouterr().err
    assert "suggestions = 9" in path.read_text()
    monkeypatch.setenv("MRS_TUI_RETRAIN_AFTER_PLAYS", "3")
    assert main(["config", "--json"]) == 0
    shown = __import__("json").loads(capsys.readouterr().out)
    assert shown["settings"]["suggestions"] == 9 and shown["settings"]["retrain_after_plays"] == 3
    assert main(["config", "--default"]) == 0
    assert capsys.readouterr().out == default_config_text()


def test_folders_follow_the_xdg_variables_and_the_overrides(isolated_dirs, monkeypatch, tmp_path):
    assert config_path() == isolated_dirs / "config" / "mrs-tui" / "config.toml"
    assert default_db_path() == isolated_dirs / "data" / "mrs-tui" / "library.db"
    assert cache_dir() == isolated_dirs / "cache" / "mrs-tui"
    monkeypatch.setenv("MRS_TUI_DB", str(tmp_path / "elsewhere.db"))
    monkeypatch.setenv("MRS_TUI_CACHE", str(tmp_path / "cache"))
    assert (default_db_path(), cache_dir()) == (tmp_path / "elsewhere.db", tmp_path / "cache")


def test_saving_settings_changes_them_in_place_and_keeps_the_comments(tmp_path):
    from mrs_tui.config import save_settings

    path = tmp_path / "config.toml"
    path.write_text(default_config_text().replace("# diversity_window = 10", "diversity_window = 10"), encoding="utf-8")
    save_settings(path, {"diversity_window": 4, "diversity_artist_cap": 1, "diversity_exploration": "sample"})
    text = path.read_text(encoding="utf-8")
    assert "diversity_window = 4\n" in text and "diversity_window = 10" not in text  # changed where it stood
    assert text.count("diversity_artist_cap = 1\n") == 1 and "# diversity_artist_cap = 2" in text  # comments stay
    loaded = Settings.load(path, environ={})
    assert (loaded.diversity_window, loaded.diversity_artist_cap, loaded.diversity_exploration) == (4, 1, "sample")
    assert loaded.source == path


def test_saving_a_bad_value_names_the_key_and_leaves_the_file_alone(tmp_path):
    from mrs_tui.config import save_settings

    path = tmp_path / "config.toml"
    path.write_text("[mrs-tui]\ndiversity_window = 10\n", encoding="utf-8")
    with pytest.raises(UserError, match="diversity_artist_cap = 0 must be at least 1"):
        save_settings(path, {"diversity_window": 3, "diversity_artist_cap": 0})
    assert path.read_text(encoding="utf-8") == "[mrs-tui]\ndiversity_window = 10\n"
    fresh = tmp_path / "new" / "config.toml"  # no file yet: one with the section is written
    save_settings(fresh, {"diversity_recent_hours": 0.5})
    assert fresh.read_text(encoding="utf-8") == "[mrs-tui]\ndiversity_recent_hours = 0.5\n"


def test_opening_the_app_on_a_configured_folder_that_is_gone_is_one_line(tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, f"[mrs-tui]\nlibrary_folders = ['{tmp_path / 'gone'}']\n")
    assert main(["--config", str(path), "--db", str(tmp_path / "lib.db")]) == 2
    err = capsys.readouterr().err
    assert f"library_folders: {tmp_path / 'gone'} is not a folder" in err and str(path) in err
