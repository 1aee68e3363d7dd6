"""The dashboard's live view (``GET /admin/dashboard``): snapshots of one or more workers, added up."""

from __future__ import annotations

import time
from typing import Any

from plugins.dashboard.series import WINDOW_S, per_minute, per_second, percentile
from plugins.dashboard.shared import LIVE_S

# Worst first: with several workers a provider shows the worst circuit and health any live one sees.
CIRCUIT_ORDER = ("open", "half_open", "closed")
STATUS_ORDER = ("unhealthy", "unknown", "healthy")


def worst(values: list[str], order: tuple[str, ...]) -> str | None:
    known = [v for v in values if v in order]
    return min(known, key=order.index) if known else (values[0] if values else None)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def provider_view(name: str, parts: list[dict[str, Any]], live: list[dict[str, Any]], now: int) -> dict[str, Any]:
    rows = [row for part in parts for row in part["rows"]]
    requests, errors = sum(per_second(rows, now, 1)), sum(per_second(rows, now, 2))
    latency = [v for part in parts for v in part["latency"]]
    ttft = [v for part in parts for v in part["ttft"]]
    errored = [p for p in parts if p.get("last_error_at")]
    last = max(errored, key=lambda p: p["last_error_at"]) if errored else None
    return {
        "name": name,
        "status": worst([p["status"] for p in live if p.get("status")], STATUS_ORDER) or "unknown",
        "circuit": worst([p["circuit"] for p in live if p.get("circuit")], CIRCUIT_ORDER) or "closed",
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "latency_p50_ms": ms(percentile(latency, 0.5)),
        "latency_p95_ms": ms(percentile(latency, 0.95)),
        "ttft_p50_ms": ms(percentile(ttft, 0.5)),
        "ttft_p95_ms": ms(percentile(ttft, 0.95)),
        "streams_in_flight": sum(p["streams"] for p in live),
        "last_error": last["last_error"] if last else None,
        "last_error_at": last["last_error_at"] if last else None,
    }


def build_view(snapshots: list[dict[str, Any]], now: float | None = None) -> dict[str, Any]:
    """The page's data from every worker's snapshot (``LiveStats.snapshot`` plus ``written``)."""
    wall = time.time() if now is None else now
    second = int(wall)
    live = [s for s in snapshots if wall - s.get("written", wall) <= LIVE_S]
    rows = [row for s in snapshots for row in s["rows"]]
    names = sorted({name for s in snapshots for name in s["providers"]})
    providers = [
        provider_view(name,
                      [s["providers"][name] for s in snapshots if name in s["providers"]],
                      [s["providers"][name] for s in live if name in s["providers"]], second)
        for name in names
    ]
    requests, errors = per_second(rows, second, 1), per_second(rows, second, 2)
    return {
        "time": wall,
        "window_s": WINDOW_S,
        "workers": len(live),
        "requests_per_s": requests,
        "errors_per_s": errors,
        "tokens_per_min": per_minute(per_second(rows, second, 3)),
        "totals": {"requests": sum(requests), "errors": sum(errors),
                   "requests_last_min": sum(requests[-60:]), "errors_last_min": sum(errors[-60:])},
        # USD, as priced by governance (which the admin section that enables the dashboard turns on).
        "spend_per_min": [round(v, 6) for v in per_minute(per_second(rows, second, 4))],
        "providers": providers,
    }
