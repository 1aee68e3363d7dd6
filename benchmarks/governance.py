"""Auth plus budget checks at N virtual keys, side by side with no auth, in one run.

Two gateways in this process, both on the offline mock provider: ``open`` (no auth, no
governance) and ``governed`` (admin section, N virtual keys each with a daily budget and in a team
with a budget, prices for the mock model, spend written behind to a SQLite file). One client sends
requests alternately to each (A, B, A, B ...) over kept-alive connections, so machine noise hits
both alike, each request with a different one of the N keys on ``governed``. Requests go in
alternating batches; reported per gateway are the median wall time and CPU time per request, and
the median per-round CPU difference: what auth + budget reservation + pricing + settling + the
spend record (and its share of the writer thread) add per request. On a shared machine wall time
swings with other load; CPU time is the number to compare.

    python benchmarks/governance.py                  # 10,000 keys, 30 rounds of 100 requests each
    python benchmarks/governance.py --keys 1000 --rounds 4 --batch 20
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.app import build_app  # noqa: E402
from gateway.connections import make_runner  # noqa: E402
from gateway.context import Outcome, RequestContext, Usage  # noqa: E402
from gateway.keys import GATEWAY  # noqa: E402
from gateway.loader import load_data  # noqa: E402
from gateway.operations import OPERATIONS  # noqa: E402
from plugins.governance import ACCOUNTING, GOVERNANCE  # noqa: E402
from plugins.governance.records import KeyRecord, TeamRecord  # noqa: E402
from plugins.governance.store import KEY_COLUMNS, NEXT_SEQ, open_store, upsert  # noqa: E402

MOCK = {"name": "mock", "type": "mock", "models": ["mock-1"], "options": {"reply": "echo"},
        "health_check": {"enabled": False}}
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}


async def seed_store(url: str, secrets: list[str], key_budget: float = 1e6, team_budget: float = 1e9,
                     rate_limit: dict[str, int] | None = None) -> None:
    """One key per secret (ids ``key_00000000``...), each with a daily budget of ``key_budget``
    and ``rate_limit``, all in the team ``team_bench`` with a monthly budget of ``team_budget``,
    straight into the store (one transaction: a second call replaces the same rows)."""
    store = open_store(url)
    await store.open()
    now = time.time()
    await store.save_team(TeamRecord(id="team_bench", name="bench", budget_usd=team_budget, budget_period="month",
                                     created_at=now, updated_at=now))
    rows = []
    sql = ""
    for i, secret in enumerate(secrets):
        record = KeyRecord(id=f"key_{i:08d}", digest=hashlib.sha256(secret.encode()).hexdigest(), hint="sk-gw-...",
                           name=f"bench-{i}", team_id="team_bench", rate_limit=rate_limit, budget_usd=key_budget,
                           budget_period="day", created_at=now, updated_at=now)
        sql, values = upsert("keys", KEY_COLUMNS, record)
        rows.append(values)
    await store.run([(NEXT_SEQ, ()), ("many:" + sql, rows)])
    await store.close()


async def seed(url: str, n: int) -> list[str]:
    """N keys in one team, straight into the store; their secrets."""
    secrets = [f"sk-gw-bench-{i:08d}-{'x' * 24}" for i in range(n)]
    await seed_store(url, secrets)
    return secrets


async def start(config: dict[str, Any]) -> tuple[web.AppRunner, str]:
    runner = await make_runner(build_app(load_data(config, {})), access_log=None, shutdown_timeout=5)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"


async def batch(
    http: aiohttp.ClientSession, url: str, keys: list[str] | None, offset: int, n: int
) -> tuple[float, float]:
    """(wall, CPU) seconds per request over ``n`` sequential requests. CPU time is this process's
    (client, both gateways, the store thread): other load on the machine barely moves it."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        headers = {"Authorization": f"Bearer {keys[((offset + i) * 7919) % len(keys)]}"} if keys else None
        async with http.post(url, json=BODY, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


async def measure(keys: int, rounds: int, per_batch: int, workdir: Path) -> dict[str, float]:
    url = f"sqlite:///{workdir}/bench.db"
    secrets = await seed(url, keys)
    open_runner, open_url = await start({"providers": [MOCK]})
    gov_runner, gov_url = await start({
        "providers": [MOCK], "admin": {"keys": ["bench-admin-key"]}, "store": {"url": url},
        "pricing": {"mock/mock-1": {"input": 0.15, "output": 0.6}}})
    plain: list[tuple[float, float]] = []
    governed: list[tuple[float, float]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as http:
            await batch(http, open_url, None, 0, 200)  # warm-up: connections, caches, the first flush
            await batch(http, gov_url, secrets, 0, 200)
            for r in range(rounds):  # alternating batches: drift hits both alike
                plain.append(await batch(http, open_url, None, 0, per_batch))
                governed.append(await batch(http, gov_url, secrets, r * per_batch, per_batch))
    finally:
        await gov_runner.cleanup()
        await open_runner.cleanup()
    med = statistics.median
    return {"keys": keys, "requests": rounds * per_batch,
            "open_wall_us": med(w for w, _ in plain) * 1e6, "governed_wall_us": med(w for w, _ in governed) * 1e6,
            "open_cpu_us": med(c for _, c in plain) * 1e6, "governed_cpu_us": med(c for _, c in governed) * 1e6,
            "added_cpu_us": med(g[1] - p[1] for g, p in zip(governed, plain, strict=True)) * 1e6}


class StandIn:
    """What the request-path hooks read of an aiohttp request: its headers and app."""

    def __init__(self, headers: dict[str, str], app: web.Application) -> None:
        self.headers = headers
        self.app = app


async def hooks_cost(keys: int, n: int, workdir: Path) -> float:
    """CPU seconds per request of the governance hooks alone (authenticate, admission with a key
    and a team budget, pricing, settling, the spend record), against the same loop without them."""
    url = f"sqlite:///{workdir}/hooks.db"
    secrets = await seed(url, keys)
    app = build_app(load_data({"providers": [MOCK], "admin": {"keys": ["bench-admin-key"]}, "store": {"url": url},
                               "pricing": {"mock/mock-1": {"input": 0.15, "output": 0.6}}}, {}))
    gov, accounting, gw = app[GOVERNANCE], app[ACCOUNTING], app[GATEWAY]
    await gov.start(None)
    auth = gw.pm.get_plugin("governance.keys")
    chat = next(op for op in OPERATIONS if op.name == "chat")
    requests = [StandIn({"Authorization": f"Bearer {s}"}, app) for s in secrets]
    targets = gw.router.resolve("mock-1")

    async def loop(governed: bool) -> float:
        start = time.process_time()
        for i in range(n):
            ctx = RequestContext(requests[(i * 7919) % keys], chat, "req")  # type: ignore[arg-type]
            ctx.body, ctx.model, ctx.targets = dict(BODY), "mock-1", targets
            outcome = Outcome(200, provider="mock", model="mock-1", usage=Usage(3, 8, 0), latency_s=0.001)
            if governed:
                ctx.principal = auth.gateway_authenticate(ctx)
                # Each returns a coroutine only when Redis holds the budget counters.
                if (pending := accounting.gateway_request_received(ctx)) is not None:
                    await pending
                if (pending := accounting.gateway_request_finished(ctx, outcome)) is not None:
                    await pending
        return (time.process_time() - start) / n

    try:
        bare = min([await loop(False) for _ in range(3)])
        governed = min([await loop(True) for _ in range(3)])
    finally:
        await gov.stop()
    return governed - bare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-gov-") as tmp:
        r = asyncio.run(measure(args.keys, args.rounds, args.batch, Path(tmp)))
        hooks = asyncio.run(hooks_cost(args.keys, args.rounds * args.batch, Path(tmp)))
    print(f"keys={r['keys']} requests per gateway={r['requests']} (medians of {args.rounds} alternating batches)")
    print("| gateway | wall µs/request | CPU µs/request |\n| --- | --- | --- |")
    print(f"| open (no auth) | {r['open_wall_us']:.0f} | {r['open_cpu_us']:.0f} |")
    print(f"| governed | {r['governed_wall_us']:.0f} | {r['governed_cpu_us']:.0f} |")
    print(f"added per request: {r['added_cpu_us']:.1f} µs CPU (median of per-round differences); "
          f"ratio governed/open CPU {r['governed_cpu_us'] / r['open_cpu_us']:.3f}")
    print(f"governance hooks alone (in process, best of 3): {hooks * 1e6:.1f} µs CPU per request "
          f"= {hooks / r['open_cpu_us'] * 1e6:.3f} of an open request's CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
