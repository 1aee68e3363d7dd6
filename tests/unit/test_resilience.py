from __future__ import annotations

from gateway.config import CircuitBreakerConfig
from gateway.errors import UpstreamStatusError, harms_health
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


def test_outcomes_spread_over_the_window_count_together_and_leave_it_a_bucket_at_a_time():
    clock = Clock()
    cfg = CircuitBreakerConfig(consecutive_failures=100, error_rate=0.5, min_requests=4, window_s=10)
    b = CircuitBreaker(cfg, clock)
    for t, ok in ((0.5, False), (3.5, True), (6.5, True)):
        clock.now = t
        b.record(ok)
    clock.now = 9.5
    b.record(False)  # 2 of 4 within 10 s
    assert b.state == OPEN

    b = CircuitBreaker(cfg, clock)
    for t, ok in ((0.5, False), (0.6, False), (5.5, True)):
        clock.now = t
        b.record(ok)
    clock.now = 10.7  # the two failures' bucket (0-1 s) has left; 1 of 2 is under min_requests
    b.record(False)
    assert b.state == CLOSED


def test_panic_is_reported_while_open_and_forgotten_once_closed():
    clock = [0.0]
    breaker = CircuitBreaker(CircuitBreakerConfig(consecutive_failures=1, open_s=10), clock=lambda: clock[0])
    breaker.record(False)
    assert breaker.state == "open" and not breaker.in_panic
    clock[0] = 1.0
    breaker.panicked()
    assert breaker.in_panic and breaker.panics == 1 and breaker.last_panic is not None
    clock[0] = 11.0
    assert breaker.allow()  # the half-open probe
    breaker.record(True)
    assert breaker.state == "closed" and not breaker.in_panic and breaker.panics == 1


def test_a_vendor_429_does_not_harm_health_but_a_5xx_does():
    assert not harms_health(UpstreamStatusError("slow down", upstream_status=429))
    assert harms_health(UpstreamStatusError("oops", upstream_status=500))
    assert not harms_health(UpstreamStatusError("bad request", upstream_status=400))
