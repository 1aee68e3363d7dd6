"""The dashboard's per-second buffers and the view built from several workers' snapshots."""

from __future__ import annotations

from plugins.dashboard.series import WINDOW_S, LiveStats, SecondRing, per_minute, per_second, percentile
from plugins.dashboard.view import build_view

NOW = 1_800_000_000


def test_a_slot_sums_its_second_and_restarts_when_its_second_comes_round_again() -> None:
    ring = SecondRing()
    ring.add(NOW, 200, 10, 0.5)
    ring.add(NOW, 503, 5, 0.25)
    ring.add(NOW, 400, 1, 0.0)  # the client's fault: a failure, not the provider's error
    assert ring.rows(NOW) == [[NOW, 3, 1, 16, 0.75]]
    assert ring.rows(NOW, "failed") == [[NOW, 3, 2, 16, 0.75]]
    ring.add(NOW + WINDOW_S, 200, 1, 0.0)  # same slot, 15 minutes later: the old second is gone
    assert ring.rows(NOW + WINDOW_S) == [[NOW + WINDOW_S, 1, 0, 1, 0.0]]


def test_seconds_older_than_the_window_are_left_out_and_memory_stays_bounded() -> None:
    ring = SecondRing()
    for second in range(NOW, NOW + 3 * WINDOW_S):
        ring.add(second, 200, 1, 0.0)
    now = NOW + 3 * WINDOW_S - 1
    rows = ring.rows(now)
    assert len(rows) == WINDOW_S and len(ring.stamps) == WINDOW_S
    assert min(r[0] for r in rows) == now - WINDOW_S + 1
    assert ring.rows(now + WINDOW_S) == []  # idle for 15 minutes: nothing left


def test_per_second_adds_up_workers_and_per_minute_sums_sixty_seconds() -> None:
    rows = [[NOW, 2, 0, 30, 0.0], [NOW, 3, 1, 20, 0.0], [NOW - 61, 1, 1, 7, 0.0], [NOW - WINDOW_S, 9, 9, 9, 0.0]]
    requests = per_second(rows, NOW, 1)
    assert len(requests) == WINDOW_S and requests[-1] == 5 and requests[-62] == 1 and sum(requests) == 6
    tokens = per_minute(per_second(rows, NOW, 3))
    assert len(tokens) == 15 and tokens[-1] == 50 and tokens[-2] == 7


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0


def test_an_idle_gateway_gives_zeros() -> None:
    view = build_view([{**LiveStats().snapshot(NOW), "written": NOW}], now=NOW)
    assert view["totals"] == {"requests": 0, "errors": 0, "requests_last_min": 0, "errors_last_min": 0}
    assert set(view["requests_per_s"]) == {0} and len(view["requests_per_s"]) == WINDOW_S
    assert set(view["tokens_per_min"]) == {0} and set(view["spend_per_min"]) == {0}
    assert view["workers"] == 1 and view["providers"] == []


def test_the_totals_add_up_every_provider_and_the_requests_none_served() -> None:
    stats = LiveStats()
    stats.provider("a").ring.add(NOW, 200, 4, 0.01)
    stats.provider("a").ring.add(NOW, 429, 0, 0.0)
    stats.provider("b").ring.add(NOW, 400, 0, 0.0)
    stats.provider("b").ring.add(NOW - 1, 200, 2, 0.02)
    stats.unserved.add(NOW, 401, 0, 0.0)
    snap = stats.snapshot(NOW)
    assert snap["rows"] == [[NOW - 1, 1, 0, 2, 0.02], [NOW, 4, 3, 4, 0.01]]
    assert sorted(snap["providers"]["b"]["rows"]) == [[NOW - 1, 1, 0, 2, 0.02], [NOW, 1, 0, 0, 0.0]]


def worker(requests: int, streams: int, circuit: str, written: float) -> dict:
    stats = LiveStats()
    p = stats.provider("a")
    for _ in range(requests):
        p.ring.add(NOW, 200, 4, 0.01)
        p.latency.append(0.1)
    p.streams = streams
    snap = stats.snapshot(NOW)
    snap["providers"]["a"].update(status="healthy", circuit=circuit)
    return {**snap, "written": written}


def test_workers_add_up_and_a_gone_worker_keeps_its_history_but_not_its_live_state() -> None:
    view = build_view([worker(3, 1, "closed", NOW), worker(2, 2, "open", NOW), worker(4, 5, "open", NOW - 60)],
                      now=NOW)
    assert view["workers"] == 2
    assert view["totals"]["requests"] == 9 and view["tokens_per_min"][-1] == 36
    assert round(view["spend_per_min"][-1], 6) == 0.09
    (a,) = view["providers"]
    assert a["requests"] == 9 and a["streams_in_flight"] == 3 and a["circuit"] == "open"
    assert a["latency_p50_ms"] == 100.0 and a["error_rate"] == 0.0
