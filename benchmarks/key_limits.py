"""A virtual key's rate limit against a static key's with the same limit, side by side in one run.

Both go through the rate-limit plugin's own path in this process: ``RateLimitState.plans``
(the static key found in the configured table; the virtual key's spec read from its principal and
its cached plan reused), the charges, and the memory backend's ``acquire``. Rounds
alternate A, B, A, B so machine noise hits both alike; reported is the median time per admission
of each and their ratio (virtual / static; 1.0 means the same cost).

    python benchmarks/key_limits.py [--rounds 30 --batch 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import RateLimitSpec  # noqa: E402
from gateway.context import Principal  # noqa: E402
from gateway.loader import load_data  # noqa: E402
from plugins.ratelimit import build_state, tokens_for  # noqa: E402

MOCK = {"name": "mock", "type": "mock", "models": ["mock-1"], "health_check": {"enabled": False}}
LIMIT = {"requests_per_minute": 10**9}  # never refuses: the admission path is what is timed


async def per_admission(state: Any, ctx: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        plan = state.plans.of(ctx)
        await state.backend.acquire(plan.charges(tokens_for(ctx, state, plan)))
    return (time.perf_counter() - start) / n


async def main(rounds: int, batch: int) -> None:
    config = load_data({"providers": [MOCK], "admin": {"keys": ["adm-" + "k" * 32]},
                        "auth": {"keys": [{"name": "static", "key": "sk-static-" + "s" * 24,
                                           "rate_limit": LIMIT}]}}, {}).config
    state = build_state(config)
    assert state is not None
    spec = RateLimitSpec.model_validate(LIMIT)
    static = SimpleNamespace(targets=(), principal=Principal("static"))
    virtual = SimpleNamespace(targets=(), principal=Principal("key_bench", (), {"key_id": "key_bench",
                                                                                "rate_limit": spec}))
    assert state.limits_for(virtual) and state.limits_for(static)
    times: dict[str, list[float]] = {"static": [], "virtual": []}
    for _ in range(rounds):
        for name, ctx in (("static", static), ("virtual", virtual)):
            times[name].append(await per_admission(state, ctx, batch))
    s, v = statistics.median(times["static"]), statistics.median(times["virtual"])
    print(f"static key  {s * 1e6:.2f} us per admission")
    print(f"virtual key {v * 1e6:.2f} us per admission")
    print(f"virtual / static: {v / s:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.batch))
