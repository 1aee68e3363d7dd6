#!/usr/bin/env python3
"""Cost of client-key lookup at 1 and at 10,000 configured keys, side by side in one run.

    python benchmarks/auth_keys.py                # 5 rounds, 20,000 lookups per case and round
    python benchmarks/auth_keys.py --rounds 9 --lookups 50000

Times ``plugins.auth.AuthState.match`` (hash the presented key, find its entry), the only part
of authentication whose work could depend on the number of keys, for a valid key and an unknown
one. The cases take turns round by round and the median per case is reported, so drift on a
shared machine hits them alike. The line that matters is the added cost of 10,000 keys over one
key; the budget is 0.05 ms (50 µs) per request. Exit code 1 when it is over budget.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugins.auth import AuthState, KeyEntry

BUDGET_US = 50.0


def state_with(n: int) -> AuthState:
    return AuthState(tuple(
        KeyEntry(f"key-{i}", hashlib.sha256(f"sk-bench-{i:06d}".encode()).digest(), ()) for i in range(n)
    ))


def per_lookup_us(state: AuthState, presented: str, lookups: int) -> float:
    match = state.match
    started = time.perf_counter()
    for _ in range(lookups):
        match(presented)
    return (time.perf_counter() - started) / lookups * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    states = {1: state_with(1), 10_000: state_with(10_000)}
    cases = [(n, kind, presented) for n in states
             for kind, presented in (("valid", "sk-bench-000000"), ("unknown", "sk-bench-unknown"))]
    samples: dict[tuple[int, str], list[float]] = {(n, kind): [] for n, kind, _ in cases}
    for r in range(args.rounds):
        order = cases[r % len(cases):] + cases[:r % len(cases)]  # rotate: no case always goes first
        for n, kind, presented in order:
            samples[(n, kind)].append(per_lookup_us(states[n], presented, args.lookups))
    print(f"auth key lookup, median of {args.rounds} rounds x {args.lookups} lookups (µs per request)")
    print(f"{'keys':>7} {'valid key':>10} {'unknown key':>12}")
    med = {case: statistics.median(v) for case, v in samples.items()}
    for n in states:
        print(f"{n:>7} {med[(n, 'valid')]:>10.3f} {med[(n, 'unknown')]:>12.3f}")
    worst = max(med[(10_000, kind)] - med[(1, kind)] for kind in ("valid", "unknown"))
    ratio = max(med[(10_000, kind)] / med[(1, kind)] for kind in ("valid", "unknown"))
    verdict = "ok" if worst <= BUDGET_US else "OVER BUDGET"
    print(f"10,000 keys over 1 key: {worst:+.3f} µs per request (x{ratio:.2f}); budget +{BUDGET_US:.0f} µs: {verdict}")
    return 0 if worst <= BUDGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
