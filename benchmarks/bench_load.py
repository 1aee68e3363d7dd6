"""Load generators: wrk with a Lua body script, an aiohttp driver, and the time-to-first-chunk probe."""


from __future__ import annotations

import asyncio
import json
import math
import os
import re
import statistics
import time
from typing import Any

from bench_common import CLIENT_KEY, HERE, MODEL, TTFC_MODEL, BenchError, Procs, chat_body

_nonce_seq = iter(range(1, 1 << 62))
CLIENT_HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def nonce() -> str:
    """Unique per load run (and per benchmark run), so no two requests in a benchmark share a prompt:
    a response cache sees misses, as with real traffic, not the previous scenario's entries."""
    return f"r{os.getpid()}.{time.time_ns() % 10**9}.{next(_nonce_seq)}"


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    return sorted_vals[max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)]


def wrk_load(
    procs: Procs, url: str, conns: int, seconds: int, stream: bool, model: str, cpu: int | None, label: str
) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_post.lua"),
        url,
        "--",
        "stream" if stream else "nonstream",
        model,
        CLIENT_KEY,
        nonce(),
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = procs.run(f"wrk-{label}", cmd, timeout=seconds + 60)
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no BENCH_JSON line:\n{out[-800:]}")
    j = json.loads(m.group(1))
    errors = sum(j["errors"].values())
    lat = j["latency_us"]
    return {
        "rps": j["requests"] / (j["duration_us"] / 1e6),
        "requests": j["requests"],
        "errors": errors,
        "p50_ms": lat["p50"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "driver": "wrk",
    }


async def py_load(
    url: str, conns: int, seconds: float, max_requests: int | None, stream: bool, model: str
) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    state = {"sent": 0, "errors": 0}
    run = nonce()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns), timeout=timeout) as s:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(wid: int) -> None:
            i = 0
            while time.perf_counter() < deadline and (max_requests is None or state["sent"] < max_requests):
                state["sent"] += 1
                i += 1
                timed = await whole_response(s, url, chat_body(model, stream, f"{run}-{wid}-{i}"), CLIENT_HEADERS)
                if timed is not None:
                    lat.append(timed[0])
                else:
                    state["errors"] += 1

        await asyncio.gather(*(worker(w) for w in range(conns)))
        elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "requests": len(lat),
        "errors": state["errors"],
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "driver": "python",
    }


async def first_chunk(s: Any, url: str, body: bytes, headers: dict[str, str]) -> tuple[float, float] | None:
    """One stream request: seconds to the first SSE data line and to the end of the body, or None
    when it failed."""
    import aiohttp

    t0 = time.perf_counter()
    first = None
    seen = b""
    try:
        async with s.post(url, data=body, headers=headers) as r:
            async for chunk in r.content.iter_any():
                if first is None:
                    seen += chunk
                    if b"data:" in seen:
                        first = time.perf_counter()
            ok = r.status == 200 and first is not None
    except (TimeoutError, aiohttp.ClientError):
        ok = False
    if not ok:
        return None
    return first - t0, time.perf_counter() - t0


def _session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30))


async def ttfc_probe(url: str, n: int, warm: int) -> dict[str, Any]:
    """Sequential stream requests over one keep-alive connection: time to the first SSE data line."""
    ttfc: list[float] = []
    total: list[float] = []
    errors = 0
    run = nonce()
    async with _session() as s:
        for i in range(warm + n):
            timed = await first_chunk(s, url, chat_body(TTFC_MODEL, True, f"{run}-{i}"), CLIENT_HEADERS)
            if timed is None:
                errors += 1
            elif i >= warm:
                ttfc.append(timed[0])
                total.append(timed[1])
    return {
        "ttfc_ms": statistics.median(ttfc) * 1000 if ttfc else math.nan,
        "ttfc_p90_ms": pct(sorted(ttfc), 90) * 1000,
        "total_ms": statistics.median(total) * 1000 if total else math.nan,
        "requests": len(ttfc),
        "errors": errors,
    }


async def whole_response(s: Any, url: str, body: bytes, headers: dict[str, str]) -> tuple[float, float] | None:
    """One request: seconds to the whole answer (twice, in ``first_chunk``'s shape), or None when
    it failed."""
    import aiohttp

    t0 = time.perf_counter()
    try:
        async with s.post(url, data=body, headers=headers) as r:
            await r.read()
            ok = r.status == 200
    except (TimeoutError, aiohttp.ClientError):
        ok = False
    if not ok:
        return None
    t = time.perf_counter() - t0
    return t, t


async def timed_turns(
    urls: dict[str, str], n: int, warm: int, stream: bool = True, pause_s: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Like ``ttfc_probe`` for several targets at once: one request to each in turn, the order
    rotated every turn, so every target sees the same machine. Probed one after the other, two
    targets minutes apart differ by more than a change to the gateway moves them. ``median_ms`` is
    the time to the first chunk; with ``stream=False`` it is the time to the whole non-stream
    answer, with ``pause_s`` of idleness after each request."""
    names = list(urls)
    times: dict[str, list[float]] = {name: [] for name in names}
    errors = dict.fromkeys(names, 0)
    run = nonce()
    timed_request = first_chunk if stream else whole_response
    sessions = {name: _session() for name in names}
    try:
        for i in range(warm + n):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                body = chat_body(TTFC_MODEL if stream else MODEL, stream, f"{run}-{name}-{i}")
                timed = await timed_request(sessions[name], urls[name], body, CLIENT_HEADERS)
                if timed is None:
                    errors[name] += 1
                elif i >= warm:
                    times[name].append(timed[0])
                if pause_s:
                    await asyncio.sleep(pause_s)
    finally:
        for s in sessions.values():
            await s.close()
    return {
        name: {
            "median_ms": statistics.median(times[name]) * 1000 if times[name] else math.nan,
            "requests": len(times[name]),
            "errors": errors[name],
        }
        for name in names
    }


def run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


