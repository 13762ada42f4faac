"""The jobs board and its ETAs: they keep moving while a job reports nothing."""

from __future__ import annotations

import itertools

from mrs_tui.jobs import JobBoard
from mrs_tui.progress import MovingEta, clock_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_counts_down_between_reports_of_a_steady_job():
    clock = FakeClock()
    eta = MovingEta(clock=clock)
    for done in range(1, 11):  # one track a second
        clock.now += 1
        eta.update(done, 100)
    assert round(eta.seconds_left()) == 90
    clock.now += 1.5  # the next report is not overdue yet: the estimate counts down
    assert round(eta.seconds_left()) == 88
    assert not eta.stalled


def test_a_stalled_bar_shows_a_growing_eta_and_then_says_stalled():
    clock = FakeClock()
    eta = MovingEta(clock=clock)
    for done in range(1, 97):
        clock.now += 1
        eta.update(done, 100)
    assert eta.describe() == "ETA 0:04"
    seen = []
    for _ in range(12):  # two minutes without a report, read every ten seconds
        clock.now += 10
        seen.append(eta.seconds_left())
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))
    assert seen[-1] > 60 * 60  # four tracks at a rate halved a dozen times
    assert "stalled 2:00" in eta.describe()
    clock.now += 1
    eta.update(97, 100)  # it moves again: the stall is over, the estimate comes down
    assert "stalled" not in eta.describe()
    assert eta.seconds_left() < seen[-1]


def test_a_job_that_starts_over_starts_a_new_estimate():
    clock = FakeClock()
    eta = MovingEta(clock=clock)
    for done in range(1, 6):
        clock.now += 0.1  # scanning: fast
        eta.update(done * 10, 50)
    clock.now += 1
    eta.update(1, 50)  # analysing: a second a track
    clock.now += 1
    eta.update(2, 50)
    assert 40 < eta.seconds_left() < 60


def test_no_estimate_before_the_first_step_but_a_stall_is_still_named():
    clock = FakeClock()
    eta = MovingEta(clock=clock)
    eta.update(0, 10)
    assert eta.describe() == ""
    clock.now += 45
    assert eta.describe() == "stalled 0:45"


def test_board_rows_cancel_through_the_owner_and_finish_its_parts():
    clock = FakeClock()
    board = JobBoard(clock=clock)
    cancelled = []
    board.start("index", "Analysing", cancel=lambda: cancelled.append("index"))
    board.progress("index/mfcc", 3, 10, title="mfcc", parent="index")
    board.start("watch", "Watching")
    clock.now += 65
    rows = {row.key: row for row in board.rows()}
    assert rows["index/mfcc"].progress == "3/10" and rows["index/mfcc"].running_for == "1:05"
    assert rows["watch"].progress == "" and not rows["watch"].cancellable
    assert board.cancel("index/mfcc") == "mfcc"
    assert cancelled == ["index"]
    assert {row.eta for row in board.rows() if row.key.startswith("index")} == {"stopping…"}
    assert board.cancel("watch") is None
    board.finish("index")
    assert [row.key for row in board.rows()] == ["watch"]
    board.progress("index", 10, 10)  # a late report of the finished job: no ghost row
    board.progress("index/mfcc", 10, 10, parent="index")
    assert [row.key for row in board.rows()] == ["watch"]


def test_clock_text():
    assert clock_text(4) == "0:04"
    assert clock_text(750) == "12:30"
    assert clock_text(3723) == "1:02:03"
    assert clock_text(10**9) == "over 99 h"
