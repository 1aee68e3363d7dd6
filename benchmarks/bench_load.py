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

from bench_common import CLIENT_KEY, HERE, TTFC_MODEL, BenchError, Procs, chat_body

_nonce_seq = iter(range(1, 1 << 62))


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
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns), timeout=timeout) as s:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(wid: int) -> None:
            i = 0
            while time.perf_counter() < deadline and (max_requests is None or state["sent"] < max_requests):
                state["sent"] += 1
                i += 1
                body = chat_body(model, stream, f"{run}-{wid}-{i}")
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
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


async def ttfc_probe(url: str, n: int, warm: int) -> dict[str, Any]:
    """Sequential stream requests over one keep-alive connection: time to the first SSE data line."""
    import aiohttp

    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    ttfc: list[float] = []
    total: list[float] = []
    errors = 0
    run = nonce()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)
    ) as s:
        for i in range(warm + n):
            body = chat_body(TTFC_MODEL, True, f"{run}-{i}")
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
            end = time.perf_counter()
            if not ok:
                errors += 1
            elif i >= warm:
                ttfc.append(first - t0)
                total.append(end - t0)
    return {
        "ttfc_ms": statistics.median(ttfc) * 1000 if ttfc else math.nan,
        "ttfc_p90_ms": pct(sorted(ttfc), 90) * 1000,
        "total_ms": statistics.median(total) * 1000 if total else math.nan,
        "requests": len(ttfc),
        "errors": errors,
    }


def run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


