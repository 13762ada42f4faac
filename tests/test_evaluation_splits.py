"""The temporal split: the paper's rules on hand-built logs, and its invariants on generated ones."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from mrs_tui.errors import UserError
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import Dataset, PlayLog, VectorSource
from mrs_tui.evaluation.runner import EvalSettings, prepare_split
from mrs_tui.evaluation.splits import (
    add_months,
    default_test_date,
    paper_validation_pick,
    parse_date,
    parse_datetime,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def make_dataset(rows, *, sessions=None, contexts="users") -> Dataset:
    users = np.asarray([r[0] for r in rows], dtype=object)
    items = np.asarray([r[1] for r in rows], dtype=object)
    stamps = np.asarray([at(r[2]) for r in rows])
    log = PlayLog(users, items, stamps, np.ones(len(rows), np.float32), sessions=sessions)
    keys = np.asarray(sorted(set(items.tolist())), dtype=object)
    vectors = np.random.default_rng(0).normal(size=(len(keys), 4)).astype(np.float32)
    source = VectorSource("vec", keys, lambda: vectors)
    return Dataset("hand-made", "log", log, {"vec": source}, default_contexts=contexts)


def keys(split, items) -> set[str]:
    return {str(split.item_keys[i]) for i in items}


def by_key(cases):
    return {c.key: c for c in cases}


PAPER_LOG = [
    ("u1", "a", "2019-06-01 10:00"),
    ("u1", "b", "2019-12-01 10:00"),
    ("u1", "a", "2020-02-10 10:00"),  # a track u1 played in train: never a test target
    ("u1", "c", "2020-02-05 10:00"),  # hot: u2 played c in train
    ("u2", "c", "2019-07-01 10:00"),
    ("u2", "d", "2020-02-03 10:00"),  # cold: nobody played d before the test date
    ("u3", "e", "2020-02-07 10:00"),  # u3 has no training play: dropped
    ("u4", "x", "2018-12-01 10:00"),  # before the year window: ignored
    ("u4", "b", "2019-03-01 10:00"),
    ("u4", "f", "2020-03-05 10:00"),  # after the test month: ignored
    ("u5", "a", "2019-05-01 10:00"),
    ("u5", "b", "2020-02-15 10:00"),
]


def test_paper_protocol_on_a_hand_built_log():
    split = prepare_split(make_dataset(PAPER_LOG), EvalSettings(test_date="2020-02-01"), ["vec"])
    assert split.protocol == "users"
    # Catalogue = train items + cold test items; x (too old), e (dropped user), f (too late) are out.
    assert split.item_keys.tolist() == ["a", "b", "c", "d"]
    train_pairs = {
        (str(split.train_context_keys[c]), str(split.item_keys[i]))
        for c, i in zip(split.train.contexts, split.train.items, strict=True)
    }
    assert train_pairs == {("u1", "a"), ("u1", "b"), ("u2", "c"), ("u4", "b"), ("u5", "a")}
    hot = by_key(split.hot)
    assert set(hot) == {"u1", "u5"}  # two eligible validation users: too few to draw any
    assert keys(split, hot["u1"].relevant) == {"c"}
    assert keys(split, hot["u5"].relevant) == {"b"}
    assert keys(split, hot["u1"].exclude) == {"a", "b"}  # the user's training items
    assert split.train_context_keys[hot["u1"].context] == "u1"
    cold = by_key(split.cold)
    assert set(cold) == {"u2"} and keys(split, cold["u2"].relevant) == {"d"}
    assert split.val == []
    assert split.dropped["test rows of users without training plays"] == 1
    assert split.stats()["test_date"] == "2020-02-01" and split.stats()["test_end"] == "2020-03-01"


def test_candidates_all_keeps_every_item_with_vectors():
    split = prepare_split(make_dataset(PAPER_LOG), EvalSettings(test_date="2020-02-01", candidates="all"), ["vec"])
    assert split.item_keys.tolist() == ["a", "b", "c", "d", "e", "f", "x"]
    hot = split.hot_items()
    assert keys(split, np.flatnonzero(hot)) == {"a", "b", "c"}


def test_validation_users_are_the_ones_sklearn_would_draw():
    sklearn = pytest.importorskip("sklearn.model_selection")
    rows = []
    for u in range(23):
        rows.append((f"user{u:02d}", f"t{u % 5}", "2019-06-01 10:00"))
        rows.append((f"user{u:02d}", f"t{(u + 1) % 5}", "2020-02-10 10:00"))
    split = prepare_split(make_dataset(rows), EvalSettings(test_date="2020-02-01"), ["vec"])
    eligible = sorted(f"user{u:02d}" for u in range(23))
    paper_val, paper_test = sklearn.train_test_split(np.array(eligible), test_size=0.7, random_state=42)
    assert sorted(c.key for c in split.val) == sorted(paper_val.tolist())
    assert sorted(c.key for c in split.hot) == sorted(paper_test.tolist())


def test_validation_draw_matches_the_paper_sizes():
    assert paper_validation_pick(10).sum() == 3  # ceil(0.7 * 10) = 7 users test
    assert paper_validation_pick(100).sum() == 30
    assert paper_validation_pick(3).sum() == 0  # sklearn would refuse; we test on all three
    assert not paper_validation_pick(50, share_to_test=1.0).any()


SESSION_LOG = [
    # (session, track, time): one listener
    (1, "a", "2020-01-10 20:00"),
    (1, "b", "2020-01-10 20:04"),
    (1, "c", "2020-01-10 20:08"),
    (2, "a", "2020-02-03 20:00"),
    (2, "d", "2020-02-03 20:04"),
    (2, "b", "2020-02-03 20:08"),
    (2, "e", "2020-02-03 20:12"),
    (3, "c", "2020-02-05 20:00"),  # a single track: nothing to predict
    (4, "b", "2020-02-07 20:00"),
    (4, "c", "2020-02-07 20:04"),
    (4, "a", "2020-02-07 20:08"),
]


def session_dataset(rows=SESSION_LOG) -> Dataset:
    plain = [("me", item, when) for _, item, when in rows]
    return make_dataset(plain, sessions=np.asarray([s for s, _, _ in rows]), contexts="sessions")


def test_session_protocol_first_half_is_the_query_the_rest_are_targets():
    split = prepare_split(session_dataset(), EvalSettings(test_date="2020-02-01"), ["vec"])
    assert split.protocol == "sessions"
    hot, cold = by_key(split.hot + split.val), by_key(split.cold)
    # Session 2: a, d | b, e -> query {a, d}; b is hot (played in train), e is cold.
    assert keys(split, hot[2].query) == {"a", "d"}
    assert keys(split, hot[2].relevant) == {"b"}
    assert keys(split, cold[2].relevant) == {"e"}
    assert hot[2].context is None  # a new session, asked by its tracks
    assert keys(split, hot[2].exclude) == {"a", "d"}  # only the query is excluded
    # Session 4: b | c, a (at least one track of query, half of three rounds down).
    assert keys(split, hot[4].query) == {"b"} and keys(split, hot[4].relevant) == {"a", "c"}
    assert 3 not in hot and 3 not in cold
    assert split.dropped["test sessions with a single track"] == 1
    # The "all" candidates of sessions: every track with vectors is a candidate.
    assert split.item_keys.tolist() == ["a", "b", "c", "d", "e"]


def test_session_protocol_without_training_history_is_a_clear_error():
    late = [(s, i, w.replace("2020-01", "2020-02")) for s, i, w in SESSION_LOG]
    with pytest.raises(UserError, match="no play before the test date"):
        prepare_split(session_dataset(late), EvalSettings(test_date="2020-02-01"), ["vec"])


@pytest.fixture(scope="module")
def generated():
    return synthetic.generate(n_users=30, n_items=200, n_plays=3000, seed=3)


def generated_dataset(data, contexts):
    sources = {name: VectorSource(name, data.item_keys, lambda m=m: m) for name, m in data.vectors.items()}
    return Dataset("generated", "log", data.log, sources, default_contexts=contexts)


@pytest.mark.parametrize("contexts", ["users", "sessions"])
def test_split_invariants_on_a_generated_log(generated, contexts):
    data = generated
    split = prepare_split(generated_dataset(data, contexts), EvalSettings(), list(data.vectors))
    log = data.log
    test_date, test_end = split.test_date, split.test_end
    # The default test date makes the last month the test month.
    assert test_date <= log.timestamps.max() < test_end
    # Train: inside the year before the test date, never after it.
    assert split.train.timestamps.max() < test_date
    assert split.train.timestamps.min() >= split.train_start
    assert split.train_start == add_months(test_date, -12)
    train_items = set(split.train.items.tolist())
    first_play = {}  # (context, item key) -> first play time
    context_of = log.users if contexts == "users" else log.sessions
    for c, i, t in zip(context_of.tolist(), log.items.tolist(), log.timestamps.tolist(), strict=True):
        first_play[(c, i)] = min(t, first_play.get((c, i), np.inf))
    for case in split.hot + split.val + split.cold:
        for item in case.relevant:
            when = first_play[(case.key, split.item_keys[item])]
            assert test_date <= when < test_end  # no test row before the test date
        assert not set(case.relevant.tolist()) & set(case.exclude.tolist())
    for case in split.hot + split.val:
        assert set(case.relevant.tolist()) <= train_items
    for case in split.cold:
        assert not set(case.relevant.tolist()) & train_items  # cold items are absent from train
    val_keys = {c.key for c in split.val}
    assert val_keys and not val_keys & {c.key for c in split.hot}  # validation and test disjoint
    assert not val_keys & {c.key for c in split.cold}  # validation contexts have no cold target
    assert split.hot and split.cold


def test_dates():
    assert add_months(at("2019-03-31 00:00"), -1) == at("2019-02-28 00:00")
    assert add_months(at("2020-02-29 12:00"), 12) == at("2021-02-28 12:00")
    assert add_months(at("2020-02-01 00:00"), -12) == at("2019-02-01 00:00")
    assert parse_date("2019-02-01") == at("2019-02-01 00:00")
    assert parse_datetime("2019-02-01 10:30:00") == at("2019-02-01 10:30")
    assert parse_datetime("1549017000") == 1549017000.0
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        parse_date("01/02/2019")
    # Last play on 30 March: the month from 1 March to 1 April is the test month.
    assert default_test_date(np.array([at("2019-06-01 00:00"), at("2020-03-30 18:00")])) == at("2020-03-01 00:00")
    assert default_test_date(np.array([at("2020-06-15 08:00")])) == at("2020-05-16 00:00")
