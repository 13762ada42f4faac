"""The paper's temporal split, for users (research logs) and for sessions (one listener).

The paper's ``data/src/split.py`` (``date_split``), reproduced for users:

1. keep plays in ``[test_date - 1 year, test_date + 1 month)``;
2. collapse them to one row per (user, track): first play time and play count;
3. **test** rows are the pairs whose *first* play is on or after the test date — a track the
   user already played in the training year is never a test target, so excluding a user's
   training items from the ranking (as the paper's recommenders do) removes no target;
4. **train** rows are the pairs of plays before the test date;
5. test rows of users with no training row are dropped;
6. a test row is **hot** when its track occurs anywhere in train, **cold** otherwise;
7. **validation** users are drawn from the users that have hot test rows and *no* cold row,
   with ``sklearn.model_selection.train_test_split(users, test_size=0.7, random_state=42)``
   on the users sorted by id: 30 % go to validation, their hot rows leave the hot test set.
   We draw them with the same generator (``RandomState(42).permutation``, first
   ``ceil(0.7 n)`` to test), so on the same log our validation users are the paper's.

Our additions, documented because the paper's code has no counterpart:

- **Default test date**: the first midnight (UTC) from which one calendar month reaches past
  the last play, so the last month of history is the test period.
- **Sessions** (one person's history): contexts are listening sessions. Training rows are the
  (session, track) pairs before the test date; every session with at least two tracks in the
  test month is a test context. Its first half (``max(1, n // 2)`` tracks, in play order) is
  the query and the rest is the relevant set, split hot/cold by the same rule (6). Sessions of
  a listener without any training row are dropped (rule 5), validation sessions are drawn as
  in rule 7. A test session is a new context, so the ranking excludes only its query tracks:
  excluding everything the listener played in the training year, as rule 3 allows for users,
  would leave no hot target at all.
- **Fewer than four candidate validation contexts**: ``train_test_split`` would fail (an
  empty validation part); we keep all of them for testing instead.
- **Catalogue**: ``"split"`` ranks over the items of train plus the cold test items, the
  paper's item set (its ``encode_ids``); ``"all"`` ranks over every item that has vectors — the
  app's situation, where every unplayed file of the library is a cold candidate.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from mrs_tui.errors import UserError
from recommenders.base import Interactions

PAPER_VAL_TEST_SIZE = 0.7  # the paper's train_test_split(test_size=0.7): 30 % of eligible users validate
PAPER_SEED = 42


# -- dates ------------------------------------------------------------------------------------


def add_months(at: float, months: int) -> float:
    """`at` moved by whole calendar months, the day clipped to the month's end (pandas DateOffset)."""
    moment = datetime.fromtimestamp(at, UTC)
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day).timestamp()


def parse_date(text: str) -> float:
    """``YYYY-MM-DD`` as UTC midnight, in epoch seconds."""
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise UserError(f"{text!r} is not a date", "write the test date as YYYY-MM-DD") from None
    return day.replace(tzinfo=UTC).timestamp()


def parse_datetime(text: str) -> float:
    """An ISO date or date-time (no zone: UTC), or epoch seconds, as epoch seconds."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"cannot read the time {text!r}", "use epoch seconds or ISO dates (YYYY-MM-DD HH:MM:SS)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_date(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d", time.gmtime(at))


def default_test_date(timestamps: np.ndarray, test_months: int = 1) -> float:
    """The first UTC midnight whose following `test_months` reach past the last play."""
    if len(timestamps) == 0:
        raise UserError("the history is empty", "play some previews first, or evaluate a log file (--log)")
    last = datetime.fromtimestamp(float(np.max(timestamps)), UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    candidate = add_months(end.timestamp(), -test_months)
    while add_months(candidate, test_months) < end.timestamp():
        candidate += 86400.0
    return candidate


# -- what a split is --------------------------------------------------------------------------


@dataclass
class TestCase:
    """One test context: what the recommender is asked, and what counts as a hit."""

    key: object  # the user id or session id
    context: int | None  # training context of the query (users), None for a new session
    query: np.ndarray  # item indices the query is built from, in play order
    exclude: np.ndarray  # item indices never to recommend
    relevant: np.ndarray  # item indices that count as hits


@dataclass
class Split:
    protocol: str  # "users", "sessions" or "premade"
    train: Interactions  # items are indices into item_keys
    train_context_keys: np.ndarray
    item_keys: np.ndarray  # the candidates: key of each item index
    val: list[TestCase]
    hot: list[TestCase]
    cold: list[TestCase]
    test_date: float | None = None
    train_start: float | None = None
    test_end: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_keys)

    def hot_items(self) -> np.ndarray:
        return self.train.hot_mask()

    def stats(self) -> dict:
        hot = self.hot_items()
        return {
            "protocol": self.protocol,
            "test_date": format_date(self.test_date),
            "train_start": format_date(self.train_start),
            "test_end": format_date(self.test_end),
            "train_rows": len(self.train),
            "train_contexts": self.train.n_contexts,
            "items": self.n_items,
            "hot_items": int(hot.sum()),
            "cold_items": int((~hot).sum()),
            "val_contexts": len(self.val),
            "hot_test_contexts": len(self.hot),
            "cold_test_contexts": len(self.cold),
            "hot_test_rows": int(sum(len(c.relevant) for c in self.hot)),
            "cold_test_rows": int(sum(len(c.relevant) for c in self.cold)),
            "dropped": dict(self.dropped),
        }


@dataclass
class Events:
    """Interactions in integer form: the input of the split functions.

    `contexts` index `context_keys` (users, or sessions), whose codes follow the sorted keys;
    `owners` gives each context's user (sessions); `items` index the item vocabulary.
    """

    contexts: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    counts: np.ndarray
    context_keys: np.ndarray
    n_items: int
    owners: np.ndarray | None = None
    # Skips and dislikes, in the same codes; only those of the training period reach the model.
    negative_contexts: np.ndarray | None = None
    negative_items: np.ndarray | None = None
    negative_timestamps: np.ndarray | None = None


def _train_negatives(events: Events, train_start: float, test_date: float, train_contexts: np.ndarray, cat):
    """The training period's turned-down pairs as (context index, item index) for `Interactions`."""
    if events.negative_items is None or len(events.negative_items) == 0 or len(train_contexts) == 0:
        return None, None
    stamps = events.negative_timestamps
    keep = (stamps >= train_start) & (stamps < test_date)
    contexts = events.negative_contexts[keep]
    items = cat(events.negative_items[keep])
    position = np.searchsorted(train_contexts, contexts)
    clipped = np.minimum(position, len(train_contexts) - 1)
    known = (position < len(train_contexts)) & (train_contexts[clipped] == contexts) & (items >= 0)
    return position[known], items[known]


def paper_validation_pick(n: int, share_to_test: float = PAPER_VAL_TEST_SIZE, seed: int = PAPER_SEED) -> np.ndarray:
    """Boolean mask of the `n` (sorted) eligible contexts that go to validation, as sklearn would pick them."""
    mask = np.zeros(n, dtype=bool)
    if n == 0 or share_to_test >= 1.0:
        return mask
    n_test = math.ceil(share_to_test * n)
    n_val = n - n_test
    if n_val <= 0:
        return mask
    permutation = np.random.RandomState(seed).permutation(n)
    mask[permutation[n_test : n_test + n_val]] = True
    return mask


def _compress(contexts: np.ndarray, items: np.ndarray, stamps: np.ndarray, counts: np.ndarray, n_items: int):
    """One row per (context, item): first time and summed count, sorted by (context, item)."""
    if len(items) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0, np.float32)
    keys = contexts.astype(np.int64) * np.int64(n_items) + items.astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    first = np.full(len(unique), np.inf)
    np.minimum.at(first, inverse, stamps)
    total = np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.float32)
    return unique // n_items, unique % n_items, first, total


def _window(events: Events, test_date: float, train_years: int, test_months: int):
    train_start = add_months(test_date, -12 * train_years)
    test_end = add_months(test_date, test_months)
    keep = (events.timestamps >= train_start) & (events.timestamps < test_end)
    return train_start, test_end, keep


def _ordered_groups(contexts: np.ndarray, items: np.ndarray, stamps: np.ndarray) -> dict[int, np.ndarray]:
    """Per context, its items ordered by first play (ties by item index)."""
    order = np.lexsort((items, stamps, contexts))
    ctx, its = contexts[order], items[order]
    unique, starts = np.unique(ctx, return_index=True)
    bounds = [*starts.tolist(), len(ctx)]
    return {int(c): its[bounds[i] : bounds[i + 1]] for i, c in enumerate(unique)}


class _Candidates:
    """Maps vocabulary item codes to item indices ("split": train and cold test items only)."""

    def __init__(self, n_vocabulary: int, used: np.ndarray | None) -> None:
        if used is None:
            self.codes = np.arange(n_vocabulary)
        else:
            self.codes = np.unique(used)
        self.index = np.full(n_vocabulary, -1, np.int64)
        self.index[self.codes] = np.arange(len(self.codes))

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        return self.index[np.asarray(codes, np.int64)]


def _check_candidates(candidates: str) -> None:
    if candidates not in ("split", "all"):
        raise UserError(f"unknown candidate set {candidates!r}", "use 'split' (the paper's) or 'all'")


def user_split(
    events: Events,
    item_keys: np.ndarray,
    test_date: float,
    *,
    candidates: str = "split",
    train_years: int = 1,
    test_months: int = 1,
    val_share_to_test: float = PAPER_VAL_TEST_SIZE,
    seed: int = PAPER_SEED,
) -> Split:
    """The paper's `date_split` over users (see the module docstring)."""
    _check_candidates(candidates)
    train_start, test_end, keep = _window(events, test_date, train_years, test_months)
    ctx, its, ts, cnt = events.contexts[keep], events.items[keep], events.timestamps[keep], events.counts[keep]
    n = events.n_items
    all_ctx, all_items, all_first, _ = _compress(ctx, its, ts, cnt, n)
    is_test = all_first >= test_date
    before = ts < test_date
    tr_ctx, tr_items, tr_first, tr_count = _compress(ctx[before], its[before], ts[before], cnt[before], n)
    te_ctx, te_items = all_ctx[is_test], all_items[is_test]

    train_users = np.unique(tr_ctx)
    has_train = np.isin(te_ctx, train_users)
    dropped = {"test rows of users without training plays": int((~has_train).sum())}
    te_ctx, te_items = te_ctx[has_train], te_items[has_train]
    train_item_set = np.unique(tr_items)
    hot_row = np.isin(te_items, train_item_set)
    cold_users = np.unique(te_ctx[~hot_row])
    eligible = np.setdiff1d(np.unique(te_ctx[hot_row]), cold_users)  # sorted, like the paper's
    val_users = eligible[paper_validation_pick(len(eligible), val_share_to_test, seed)]

    cat = _Candidates(n, np.concatenate([tr_items, te_items[~hot_row]]) if candidates == "split" else None)
    user_index = {int(u): i for i, u in enumerate(train_users)}
    negative_contexts, negative_items = _train_negatives(events, train_start, test_date, train_users, cat)
    train = Interactions(
        np.searchsorted(train_users, tr_ctx),
        cat(tr_items),
        tr_first,
        n_contexts=len(train_users),
        n_items=len(cat.codes),
        weights=tr_count,
        negative_contexts=negative_contexts,
        negative_items=negative_items,
    )
    history = _ordered_groups(tr_ctx, tr_items, tr_first)

    def cases(mask: np.ndarray) -> list[TestCase]:
        out = []
        for user, relevant in _ordered_groups(te_ctx[mask], te_items[mask], np.zeros(int(mask.sum()))).items():
            seen = cat(history[user])
            out.append(TestCase(events.context_keys[user], user_index[user], seen, seen, cat(relevant)))
        return out

    in_val = np.isin(te_ctx, val_users)
    return Split(
        "users",
        train,
        events.context_keys[train_users],
        item_keys[cat.codes],
        val=cases(hot_row & in_val),
        hot=cases(hot_row & ~in_val),
        cold=cases(~hot_row),
        test_date=test_date,
        train_start=train_start,
        test_end=test_end,
        dropped=dropped,
    )


def session_split(
    events: Events,
    item_keys: np.ndarray,
    test_date: float,
    *,
    candidates: str = "all",
    train_years: int = 1,
    test_months: int = 1,
    val_share_to_test: float = PAPER_VAL_TEST_SIZE,
    seed: int = PAPER_SEED,
) -> Split:
    """Sessions as contexts: a test session's first half is the query, the rest the targets."""
    _check_candidates(candidates)
    owners = events.owners if events.owners is not None else np.zeros(len(events.context_keys), np.int64)
    train_start, test_end, keep = _window(events, test_date, train_years, test_months)
    ctx, its, ts, cnt = events.contexts[keep], events.items[keep], events.timestamps[keep], events.counts[keep]
    n = events.n_items
    s_ctx, s_items, s_first, s_count = _compress(ctx, its, ts, cnt, n)
    in_train = s_first < test_date
    tr_ctx, tr_items, tr_first, tr_count = s_ctx[in_train], s_items[in_train], s_first[in_train], s_count[in_train]
    train_sessions = np.unique(tr_ctx)
    owners_with_training = set(np.unique(owners[train_sessions]).tolist()) if len(train_sessions) else set()
    train_item_set = set(np.unique(tr_items).tolist())

    dropped = {"test sessions with a single track": 0, "test sessions of listeners without training plays": 0}
    drafts = []  # (session, query codes, hot codes, cold codes)
    for session, ordered in _ordered_groups(s_ctx[~in_train], s_items[~in_train], s_first[~in_train]).items():
        if int(owners[session]) not in owners_with_training:
            dropped["test sessions of listeners without training plays"] += 1
            continue
        if len(ordered) < 2:
            dropped["test sessions with a single track"] += 1
            continue
        half = max(1, len(ordered) // 2)
        query, rest = ordered[:half], ordered[half:]
        rest = rest[~np.isin(rest, query)]
        hot_mask = np.fromiter((int(i) in train_item_set for i in rest), bool, len(rest))
        drafts.append((session, query, rest[hot_mask], rest[~hot_mask]))

    eligible = np.array(sorted(s for s, _, hot, cold in drafts if len(hot) and not len(cold)), np.int64)
    val_sessions = set(eligible[paper_validation_pick(len(eligible), val_share_to_test, seed)].tolist())
    used = None
    if candidates == "split":
        used = np.concatenate([tr_items] + [q for _, q, _, _ in drafts] + [c for _, _, _, c in drafts])
    cat = _Candidates(n, used)  # query tracks stay among "split" candidates: they must be scorable
    negative_contexts, negative_items = _train_negatives(events, train_start, test_date, train_sessions, cat)
    train = Interactions(
        np.searchsorted(train_sessions, tr_ctx),
        cat(tr_items),
        tr_first,
        n_contexts=len(train_sessions),
        n_items=len(cat.codes),
        weights=tr_count,
        negative_contexts=negative_contexts,
        negative_items=negative_items,
    )
    val, hot, cold = [], [], []
    for session, query, hot_items, cold_items in drafts:
        key = events.context_keys[session]
        q = cat(query)
        if len(hot_items):
            (val if session in val_sessions else hot).append(TestCase(key, None, q, q, cat(hot_items)))
        if len(cold_items):
            cold.append(TestCase(key, None, q, q, cat(cold_items)))
    return Split(
        "sessions",
        train,
        events.context_keys[train_sessions],
        item_keys[cat.codes],
        val=val,
        hot=hot,
        cold=cold,
        test_date=test_date,
        train_start=train_start,
        test_end=test_end,
        dropped=dropped,
    )


def premade_split(parts: dict[str, Events], item_keys: np.ndarray, *, candidates: str = "split") -> Split:
    """The paper's published split files: users of val/hot/cold must occur in train."""
    _check_candidates(candidates)
    train_part = parts["train"]
    n = train_part.n_items
    tr_ctx, tr_items, tr_first, tr_count = _compress(
        train_part.contexts, train_part.items, train_part.timestamps, train_part.counts, n
    )
    train_users = np.unique(tr_ctx)
    used = None
    if candidates == "split":
        used = np.concatenate([tr_items, parts["cold_test"].items, parts["hot_test"].items, parts["val"].items])
    cat = _Candidates(n, used)
    train = Interactions(
        np.searchsorted(train_users, tr_ctx),
        cat(tr_items),
        tr_first,
        n_contexts=len(train_users),
        n_items=len(cat.codes),
        weights=tr_count,
    )
    history = _ordered_groups(tr_ctx, tr_items, tr_first)
    user_index = {int(u): i for i, u in enumerate(train_users)}
    dropped = {}

    def cases(part: str) -> list[TestCase]:
        ev = parts[part]
        known = np.isin(ev.contexts, train_users)
        dropped[f"{part} rows of users not in train"] = int((~known).sum())
        out = []
        for user, relevant in _ordered_groups(ev.contexts[known], ev.items[known], ev.timestamps[known]).items():
            seen = cat(history[user])
            out.append(TestCase(train_part.context_keys[user], user_index[user], seen, seen, cat(np.unique(relevant))))
        return out

    return Split(
        "premade",
        train,
        train_part.context_keys[train_users],
        item_keys[cat.codes],
        val=cases("val"),
        hot=cases("hot_test"),
        cold=cases("cold_test"),
        dropped=dropped,
    )
