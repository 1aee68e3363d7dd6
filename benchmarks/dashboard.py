"""The dashboard's cost on the request path, side by side in one run.

Two governed gateways in this process on the offline mock provider, identical but for the
``dashboard`` plugin: ``off`` has it in ``plugins.disabled``, ``on`` fills its per-second buffers
as each request ends. One client sends alternating batches to each over kept-alive connections
(A, B, B, A, A, B ...), so machine noise hits both alike; reported are the medians of wall and CPU time
per request and the ratio on/off (the target: within 1.02). Then the dashboard's hooks alone,
called in a loop, in CPU µs per request.

    python benchmarks/dashboard.py                   # 30 rounds of 200 requests each
    python benchmarks/dashboard.py --rounds 4 --batch 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.governance import MOCK, batch, seed, start  # noqa: E402
from gateway.context import Outcome, RequestContext, Usage  # noqa: E402
from gateway.operations import OPERATIONS  # noqa: E402

KEYS = 50


def config(db: Path, dashboard: bool) -> dict[str, object]:
    return {"providers": [MOCK], "admin": {"keys": ["bench-admin-key"]}, "store": {"url": f"sqlite:///{db}"},
            "pricing": {"mock/mock-1": {"input": 0.15, "output": 0.6}},
            "plugins": {"disabled": [] if dashboard else ["dashboard"]}}


async def measure(rounds: int, per_batch: int, workdir: Path) -> dict[str, float]:
    off_keys = await seed(f"sqlite:///{workdir}/off.db", KEYS)
    on_keys = await seed(f"sqlite:///{workdir}/on.db", KEYS)
    off_runner, off_url = await start(config(workdir / "off.db", dashboard=False))
    on_runner, on_url = await start(config(workdir / "on.db", dashboard=True))
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as http:
            await batch(http, off_url, off_keys, 0, 200)  # warm-up
            await batch(http, on_url, on_keys, 0, 200)
            for r in range(rounds):  # which goes first alternates too: no order bias
                if r % 2:
                    on.append(await batch(http, on_url, on_keys, r * per_batch, per_batch))
                    off.append(await batch(http, off_url, off_keys, r * per_batch, per_batch))
                else:
                    off.append(await batch(http, off_url, off_keys, r * per_batch, per_batch))
                    on.append(await batch(http, on_url, on_keys, r * per_batch, per_batch))
    finally:
        await on_runner.cleanup()
        await off_runner.cleanup()
    med = statistics.median
    return {"requests": rounds * per_batch,
            "off_wall_us": med(w for w, _ in off) * 1e6, "on_wall_us": med(w for w, _ in on) * 1e6,
            "off_cpu_us": med(c for _, c in off) * 1e6, "on_cpu_us": med(c for _, c in on) * 1e6,
            "wall_ratio": med(b[0] / a[0] for a, b in zip(off, on, strict=True)),
            "cpu_ratio": med(b[1] / a[1] for a, b in zip(off, on, strict=True))}


def hooks_cost(n: int) -> float:
    """CPU seconds per request of the dashboard's finish hook alone (a streamed request's path)."""
    from gateway.app import build_app
    from gateway.keys import GATEWAY
    from gateway.loader import load_data

    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(load_data(config(Path(tmp) / "h.db", dashboard=True), {}))
    chat = next(op for op in OPERATIONS if op.name == "chat")

    class StandIn:
        headers: dict[str, str] = {}

    ctx = RequestContext(StandIn(), chat, "req", app=app)  # type: ignore[arg-type]
    outcome = Outcome(200, provider="mock", model="mock-1", usage=Usage(3, 8, 0), latency_s=0.001,
                      ttft_s=0.0005, cost_usd=1e-6)
    finished = app[GATEWAY].pm.get_plugin("dashboard.live").gateway_request_finished
    started = time.process_time()
    for _ in range(n):
        finished(ctx, outcome)
    return (time.process_time() - started) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-dash-") as tmp:
        r = asyncio.run(measure(args.rounds, args.batch, Path(tmp)))
    hook = min(hooks_cost(100_000) for _ in range(3))
    print(f"requests per gateway={r['requests']} (medians of {args.rounds} alternating batches)")
    print("| dashboard | wall µs/request | CPU µs/request |\n| --- | --- | --- |")
    print(f"| off | {r['off_wall_us']:.0f} | {r['off_cpu_us']:.0f} |")
    print(f"| on | {r['on_wall_us']:.0f} | {r['on_cpu_us']:.0f} |")
    print(f"ratio on/off (median of per-round ratios): wall {r['wall_ratio']:.3f}, CPU {r['cpu_ratio']:.3f}")
    print(f"dashboard finish hook alone: {hook * 1e6:.2f} µs CPU per request "
          f"= {hook * 1e6 / r['off_cpu_us']:.4f} of a request's CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
