from __future__ import annotations

from gateway.config import CircuitBreakerConfig
from gateway.resilience import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_half_opens_with_one_probe():
    clock = Clock()
    b = CircuitBreaker(CircuitBreakerConfig(consecutive_failures=3, open_s=10), clock)
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert b.state == OPEN and not b.allow()
    clock.now = 10.5
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.record(True)
    assert b.state == CLOSED and b.allow()


def test_failed_probe_reopens_and_error_rate_opens():
    clock = Clock()
    b = CircuitBreaker(CircuitBreakerConfig(consecutive_failures=100, error_rate=0.5, min_requests=10), clock)
    for i in range(10):
        b.record(i % 2 == 0)
    assert b.state == OPEN
    clock.now = 100
    assert b.allow()
    b.record(False)
    assert b.state == OPEN


def test_old_outcomes_leave_the_window():
    clock = Clock()
    b = CircuitBreaker(CircuitBreakerConfig(consecutive_failures=100, min_requests=4, window_s=10), clock)
    for _ in range(3):
        b.record(False)
    clock.now = 20
    b.record(True)
    b.record(False)
    assert b.state == CLOSED


def test_a_probe_that_never_reports_back_expires_and_a_cancelled_one_is_freed():
    clock = Clock()
    b = CircuitBreaker(CircuitBreakerConfig(consecutive_failures=1, open_s=10), clock)
    b.record(False)
    clock.now = 11
    assert b.allow() and not b.allow()  # the probe is out
    b.cancel_probe()  # its client went away
    assert b.allow()
    clock.now = 22  # lost without a word: after open_s another probe may go
    assert b.allow()
