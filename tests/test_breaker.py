"""Circuit breaker transitions, on a clock the test moves."""

from __future__ import annotations

import pytest

from sambertd.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(window_s=60, min_calls=20, max_error_rate=0.05, open_s=30, clock=clock)


def test_stays_closed_at_or_below_the_rate(clock: Clock) -> None:
    b = breaker(clock)
    for i in range(100):
        b.record(ok=i % 20 != 19)  # never above 5 % failures
    assert b.state == CLOSED and b.allow()


def test_opens_above_the_rate_once_enough_calls(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(5):
        b.record(ok=False)
    assert b.state == CLOSED  # 5 calls: too few to judge
    for _ in range(15):
        b.record(ok=True)
    assert b.state == OPEN and not b.allow()
    assert "5/20 failed" in b.reason


def test_old_outcomes_leave_the_window(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(3):
        b.record(ok=False)
    clock.now += 61
    for _ in range(40):
        b.record(ok=True)
    b.record(ok=False)
    assert b.state == CLOSED  # 1/41 in the window, the 3 old failures expired


def test_half_open_lets_exactly_one_trial_through(clock: Clock) -> None:
    b = breaker(clock)
    b.trip("model directory missing")
    assert b.state == OPEN and b.reason == "model directory missing"
    clock.now += 29
    assert not b.allow()
    clock.now += 1
    assert b.state == HALF_OPEN
    assert b.allow() is True
    assert b.allow() is False  # a second caller waits for the trial's outcome


def test_trial_success_closes_failure_reopens(clock: Clock) -> None:
    b = breaker(clock)
    b.trip("x")
    clock.now += 30
    assert b.allow()
    b.record(ok=False, reason="still broken")
    assert b.state == OPEN and b.reason == "still broken"
    clock.now += 30
    assert b.allow()
    b.record(ok=True)
    assert b.state == CLOSED and b.allow() and b.allow()


def test_a_trial_that_never_reports_does_not_wedge_the_breaker(clock: Clock) -> None:
    b = breaker(clock)
    b.trip("x")
    clock.now += 30
    assert b.allow()  # the trial's request then dies before reaching the engine
    clock.now += 10
    assert not b.allow()
    clock.now += 20
    assert b.allow()  # a new trial after open_s
