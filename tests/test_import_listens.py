"""Importing listening exports (ListenBrainz, Last.fm, Spotify) into the play history."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mrs_tui.cli import main
from mrs_tui.errors import UserError
from mrs_tui.history import History
from mrs_tui.imports import apply_import, normalise_artist, normalise_title, plan_import
from mrs_tui.library import scan
from mrs_tui.store import Store
from tests.conftest import FIXTURE_RATE

EXPORTS = Path(__file__).resolve().parent.parent / "data" / "exports"
BJORK_MBID = "0f9c4b8e-6a1d-4c53-8a59-6c2f1f0b9e11"

# The local library the sample exports are matched against: (artist, title, album, seconds, mbid).
SAMPLE_LIBRARY = [
    ("Björk", "Jóga", "Homogenic", 305, BJORK_MBID),
    ("The Beatles", "Let It Be", "Let It Be", 243, None),
    ("Daft Punk", "Get Lucky", "Random Access Memories", 369, None),
    ("Led Zeppelin", "Communication Breakdown", "Led Zeppelin", 150, None),
    ("Nirvana", "Come As You Are", "Nevermind", 219, None),
    ("Nirvana", "Come As You Are", "Live at Reading", 230, None),
    ("Portishead", "Roads", "Dummy", 303, None),
    ("Portishead", "Roads", "Roseland NYC Live", 290, None),
    ("Sigur Rós", "Hoppípolla", "Takk...", 268, None),
    ("AC/DC", "Back In Black", "Back in Black", 255, None),
]


@pytest.fixture
def sample_store(tmp_path) -> tuple[Store, dict[tuple[str, str], int]]:
    store = Store.open(tmp_path / "library.db")
    ids = {}
    for i, (artist, title, album, seconds, mbid) in enumerate(SAMPLE_LIBRARY):
        ids[(artist, album)] = store.add_track(
            f"/music/{i}.flac",
            artist=artist,
            title=title,
            album=album,
            duration=float(seconds),
            mbid=mbid,
            content_hash=f"hash-{i}",
        )
    yield store, ids
    store.close()


def matched(plan) -> list[tuple[int, str, str]]:
    return [(p.track_id, p.event, p.how) for p in plan.plays]


# -- each format -------------------------------------------------------------------------------


def test_listenbrainz_json_matches_by_mbid_duration_and_accents(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "listenbrainz-listens.json"])
    assert plan.files[0]["format"] == "listenbrainz"
    assert matched(plan) == [
        (ids[("Björk", "Homogenic")], "complete", "mbid"),
        (ids[("Portishead", "Roseland NYC Live")], "complete", "tags+duration"),  # 290 s, not Dummy's 303 s
        (ids[("Sigur Rós", "Takk...")], "complete", "tags"),  # "Sigur Ros - Hoppipolla"
    ]
    assert dict(plan.unmatched) == {("Nobody Local", "A Song We Do Not Have"): 1}
    assert plan.problems == [
        f"{EXPORTS / 'listenbrainz-listens.json'}:46: listened_at is zero (the date was not recorded)"
    ]
    assert store.play_count(("complete", "skip")) == 0  # a plan writes nothing


def test_listenbrainz_jsonl_strips_feat_credits_and_remaster_suffixes(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "listenbrainz-listens.jsonl"])
    assert [p[0] for p in matched(plan)] == [
        ids[("The Beatles", "Let It Be")],  # "Let It Be - Remastered 2009"
        ids[("Daft Punk", "Random Access Memories")],  # "Daft Punk feat. Pharrell Williams" / "Get Lucky (feat. ...)"
        ids[("Björk", "Homogenic")],
    ]


def test_lastfm_csv_without_header_breaks_ties_by_album_and_reports_ambiguity(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "lastfm-scrobbles.csv"])
    assert plan.files[0]["format"] == "lastfm"
    assert matched(plan) == [
        (ids[("Led Zeppelin", "Led Zeppelin")], "complete", "tags"),
        (ids[("Nirvana", "Nevermind")], "complete", "tags+album"),
        (ids[("AC/DC", "Back in Black")], "complete", "tags"),
        (ids[("Portishead", "Dummy")], "complete", "tags+album"),
    ]
    assert dict(plan.ambiguous) == {("Nirvana", "Come As You Are"): 1}  # no album: two versions fit
    assert dict(plan.unmatched) == {("Hammer & Felt", "Classical 0"): 1}
    assert plan.problems == [f"{EXPORTS / 'lastfm-scrobbles.csv'}:6: date is missing or not a date"]


def test_lastfm_csv_with_header_uses_mbid_and_reports_zero_timestamps(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "lastfm-scrobbles-header.csv"])
    assert matched(plan) == [
        (ids[("Sigur Rós", "Takk...")], "complete", "tags"),
        (ids[("Björk", "Homogenic")], "complete", "mbid"),
        (ids[("Nirvana", "Live at Reading")], "complete", "tags+album"),
    ]
    name = EXPORTS / "lastfm-scrobbles-header.csv"
    assert plan.problems == [f"{name}:4: date is zero (the date was not recorded)", f"{name}:6: no artist"]
    first = plan.plays[0].listen
    assert first.at == 1699779600.0


def test_spotify_account_data_short_plays_become_skips(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "StreamingHistory0.json"])
    assert plan.files[0]["format"] == "spotify"
    assert matched(plan) == [
        (ids[("Daft Punk", "Random Access Memories")], "complete", "tags"),
        (ids[("AC/DC", "Back in Black")], "skip", "tags"),  # 12 s: under Spotify's 30 s
        (ids[("Led Zeppelin", "Led Zeppelin")], "skip", "tags"),  # 60 s of a 150 s track: under half
    ]
    get_lucky = plan.plays[0].listen
    assert get_lucky.at == pytest.approx(1699905900.0 - 369.0)  # endTime 2023-11-13 20:05 UTC minus msPlayed


def test_spotify_extended_history_skip_flag_and_podcasts(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "Streaming_History_Audio_2023_0.json"])
    assert plan.files[0]["format"] == "spotify-extended"
    assert matched(plan) == [
        (ids[("The Beatles", "Let It Be")], "complete", "tags"),
        (ids[("Portishead", "Dummy")], "skip", "tags+album"),  # "skipped": true
        (ids[("Sigur Rós", "Takk...")], "complete", "tags"),  # 140 s of 268 s: over half
    ]
    assert plan.not_music == 1


# -- writing -----------------------------------------------------------------------------------


def test_import_writes_one_transaction_with_sources_and_twice_adds_nothing(sample_store):
    store, _ids = sample_store
    files = sorted(p for p in EXPORTS.iterdir() if p.suffix != ".md")
    plan = plan_import(store, files)
    result = apply_import(store, plan)
    assert result.plays == plan.matched == 19
    assert store.play_count(("complete", "skip")) == 19
    assert store.play_count(("skip",)) == 3
    sources = {s["source"] for s in store.sessions()}
    assert sources == {"import:listenbrainz", "import:lastfm", "import:spotify"}
    again = plan_import(store, files)
    assert again.matched == 0
    assert again.already_imported == 19
    assert apply_import(store, again).plays == 0
    assert store.play_count(("complete", "skip")) == 19


def test_a_failing_import_writes_nothing(sample_store, monkeypatch):
    store, _ids = sample_store
    plan = plan_import(store, [EXPORTS / "lastfm-scrobbles.csv", EXPORTS / "StreamingHistory0.json"])
    calls = []
    original = store.add_imported_sessions

    def fail_on_second(source, sessions):
        calls.append(source)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(source, sessions)

    monkeypatch.setattr(store, "add_imported_sessions", fail_on_second)
    with pytest.raises(RuntimeError):
        apply_import(store, plan)
    assert store.play_count(("complete", "skip")) == 0
    assert store.sessions() == []


def test_imported_sessions_follow_the_session_gap(sample_store):
    store, _ids = sample_store
    plan = plan_import(store, [EXPORTS / "listenbrainz-listens.json", EXPORTS / "listenbrainz-listens.jsonl"])
    result = apply_import(store, plan, gap_minutes=30)
    # the .json listens are minutes apart, the .jsonl ones a day later
    assert result.sessions == 2
    assert [s["events"] for s in store.sessions()] == [3, 3]


def test_app_plays_after_an_import_open_their_own_session(sample_store):
    store, ids = sample_store
    plan = plan_import(store, [EXPORTS / "lastfm-scrobbles.csv"])
    apply_import(store, plan)
    imported_last = max(p.listen.at for p in plan.plays)
    history = History(store, clock=lambda: imported_last + 60)
    play = history.record(ids[("Björk", "Homogenic")], "play")
    session = next(s for s in store.sessions() if s["id"] == play.session_id)
    assert session["source"] == "app"


def test_imported_plays_feed_training_data_and_skips_are_not_positives(sample_store):
    store, ids = sample_store
    apply_import(store, plan_import(store, [EXPORTS / "StreamingHistory0.json"]))
    tracks = sorted(ids.values())
    data = History(store).data({t: i for i, t in enumerate(tracks)})
    positives = {tracks[i] for i in data.interactions.items}
    assert positives == {ids[("Daft Punk", "Random Access Memories")]}  # the two skips are left out
    assert data.interactions.n_contexts == 1


# -- encodings and damaged files ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp1252"])
def test_bom_and_windows_encodings_read_the_same(sample_store, tmp_path, encoding):
    store, _ids = sample_store
    text = (EXPORTS / "lastfm-scrobbles-header.csv").read_text(encoding="utf-8")
    path = tmp_path / "scrobbles.csv"
    path.write_bytes(text.encode(encoding))
    plan = plan_import(store, [path])
    assert [p.track_id for p in plan.plays] == [
        p.track_id for p in plan_import(store, [EXPORTS / "lastfm-scrobbles-header.csv"]).plays
    ]
    notes = " ".join(plan.notes)
    assert ("Windows-1252" in notes) == (encoding == "cp1252")
    if encoding == "cp1252":
        assert f"{path}:2: not UTF-8" in notes  # the line of the first "Rós"


def test_damaged_json_names_file_and_line(sample_store, tmp_path):
    store, _ids = sample_store
    text = (EXPORTS / "Streaming_History_Audio_2023_0.json").read_text()
    cut = tmp_path / "Streaming_History_Audio_2023_1.json"
    cut.write_text(text[: text.index('"ms_played": 95000')] + '"ms_played": 95000,\n  }')
    with pytest.raises(UserError, match=rf"{cut}:27: not valid JSON"):
        plan_import(store, [cut])


@pytest.mark.parametrize(
    "content, message",
    [
        (b'[{"name": "a playlist", "items": []}]', "not a ListenBrainz, Last.fm or Spotify export"),
        (b"id;colour\n1;red\n", "not a Last.fm scrobble CSV"),
        (b"", "the file is empty"),
    ],
)
def test_files_that_are_not_exports_are_refused_by_name(sample_store, tmp_path, content, message):
    store, _ids = sample_store
    path = tmp_path / "thing.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        plan_import(store, [path])
    assert str(path) in str(info.value)


def test_listenbrainz_zip_export(sample_store, tmp_path):
    store, _ids = sample_store
    archive = tmp_path / "listenbrainz_export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("user.json", json.dumps({"user_name": "someone"}))
        z.writestr("feedback.jsonl", "")
        z.write(EXPORTS / "listenbrainz-listens.jsonl", "listens/2023/11.jsonl")
    plan = plan_import(store, [archive])
    assert [f["name"] for f in plan.files] == [f"{archive}/listens/2023/11.jsonl"]
    assert plan.matched == 3


# -- matching rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("Hoppípolla", "hoppipolla"),
        ("Let It Be - Remastered 2009", "Let It Be"),
        ("Let It Be (2009 Remaster)", "let it be"),
        ("Get Lucky (feat. Pharrell Williams)", "Get Lucky"),
        ("Get Lucky feat. Pharrell", "Get Lucky"),
        ("Don't Stop Me Now", "Dont Stop Me Now"),
        ("Roads [Mono Version]", "Roads"),
    ],
)
def test_titles_that_normalise_alike(a, b):
    assert normalise_title(a) == normalise_title(b)


@pytest.mark.parametrize(
    "a, b",
    [("Roads - Live", "Roads"), ("Roads (Live at Roseland)", "Roads"), ("Roads (Remix)", "Roads")],
)
def test_different_recordings_stay_apart(a, b):
    assert normalise_title(a) != normalise_title(b)


def test_artist_normalisation():
    assert normalise_artist("The Beatles") == normalise_artist("beatles")
    assert normalise_artist("Daft Punk feat. Pharrell Williams") == normalise_artist("Daft Punk")
    assert normalise_artist("Simon & Garfunkel") == normalise_artist("Simon and Garfunkel")
    assert normalise_artist("AC/DC") == normalise_artist("AC-DC")


def test_mbid_from_real_file_tags_matches_a_renamed_listen(tmp_path):
    from mrs_tui.demo import STYLES, synthesize, write_track

    root = tmp_path / "music"
    write_track(
        root / "joga.flac",
        synthesize(STYLES[0], 2.0, sr=FIXTURE_RATE, seed=1),
        FIXTURE_RATE,
        {"title": "Joga (album version)", "artist": "Bjork", "musicbrainz_trackid": BJORK_MBID},
    )
    store = Store.open(tmp_path / "lib.db")
    scan(store, root)
    (track,) = store.tracks()
    assert track.mbid == BJORK_MBID
    plan = plan_import(store, [EXPORTS / "listenbrainz-listens.json"])
    assert [(p.track_id, p.how) for p in plan.plays] == [(track.id, "mbid")]


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_dry_run_then_import_then_history_shows_the_source(sample_store, capsys):
    store, _ids = sample_store
    db = str(store.path)
    csv_file = str(EXPORTS / "lastfm-scrobbles.csv")
    assert main(["--db", db, "history", "import", csv_file, "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dry_run"], report["matched"], report["ambiguous"], report["unmatched"]) == (True, 4, 1, 1)
    assert report["problems"] == [f"{csv_file}:6: date is missing or not a date"]
    assert store.play_count(("complete",)) == 0
    assert main(["--db", db, "history", "import", csv_file]) == 0
    out = capsys.readouterr().out
    assert "imported 4 plays (0 skips) in 1 sessions" in out
    assert main(["--db", db, "history", "import", csv_file]) == 0
    assert "4 already imported" in capsys.readouterr().out
    assert main(["--db", db, "history", "--json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert [(s["source"], len(s["plays"])) for s in sessions] == [("import:lastfm", 4)]


def test_cli_import_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["--db", str(tmp_path / "x.db"), "history", "import", str(missing)]) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"mrs-tui: error: {missing}: no such file")
    assert len(err.strip().splitlines()) == 1


# -- scale -----------------------------------------------------------------------------------------


def write_lastfm_export(path: Path, store: Store, rows: int, *, seed: int = 0) -> int:
    """A headerless Last.fm CSV of `rows` scrobbles, 1 in 10 of tracks the library lacks; returns the matchable rows."""
    rng = np.random.default_rng(seed)
    tracks = store.tracks()
    picks = rng.integers(0, len(tracks), rows)
    unknown = rng.random(rows) < 0.1
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    start = 1_600_000_000
    for i in range(rows):
        t = tracks[picks[i]]
        stamp = start + 200 * i
        when = time.strftime("%d %b %Y %H:%M", time.gmtime(stamp))
        if unknown[i]:
            writer.writerow([f"Stranger {i % 997}", "Nowhere", f"Unknown Song {i}", when])
        else:
            writer.writerow([t.artist, t.album, t.title, when])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return int((~unknown).sum())


@pytest.mark.slow
def test_a_100k_row_export_imports_once(tmp_path):
    store = Store.open(tmp_path / "lib.db")
    with store.write():
        for i in range(500):
            store.add_track(
                f"/music/{i}.flac",
                artist=f"Artist {i % 50}",
                title=f"Song {i}",
                album=f"Album {i % 80}",
                duration=200.0,
            )
    export = tmp_path / "scrobbles.csv"
    # minute resolution: two scrobbles 200 s apart never collide, so every row is one listen
    matchable = write_lastfm_export(export, store, 100_000)
    plan = plan_import(store, [export])
    assert plan.total == 100_000
    assert plan.matched == matchable
    assert sum(plan.unmatched.values()) == 100_000 - matchable
    result = apply_import(store, plan)
    assert result.plays == matchable
    assert store.play_count(("complete",)) == matchable
    again = plan_import(store, [export])
    assert (again.matched, again.already_imported) == (0, matchable)
