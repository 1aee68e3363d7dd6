#!/usr/bin/env python3
"""Time to first event: /v1/messages and /v1/responses (translated through chat) beside
/v1/chat/completions, on one gateway in front of the mock upstream, in one run.

The three endpoints take turns request by request (the order rotated every turn), so whatever
else the machine does hits them alike. Model ``bench-ttfc``: the upstream holds 20 ms after its
first chunk, so an endpoint that held its first event back would show >= 20 ms. Reports each
endpoint's median time to the first ``data:`` line and its difference to chat's in ms (the
issue's bound: within 0.2 ms), and the same for the whole stream.

    python benchmarks/dialects.py                 # 300 turns
    python benchmarks/dialects.py --turns 50      # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_common import DEFAULT_PORTS, HERE, TTFC_MODEL, BenchError, Procs, free_port, start_upstream, wait_ready
from bench_load import _session, first_chunk, nonce

CONFIG = HERE / "gateway.bench-dialects.yaml"
HEADERS = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}


def bodies(tag: str) -> dict[str, tuple[str, bytes]]:
    """(path, body) per endpoint: the same question in each dialect."""
    text = f"bench {tag}"
    chat = {"model": TTFC_MODEL, "max_tokens": 64, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": text}]}
    messages = {"model": TTFC_MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": text}]}
    responses = {"model": TTFC_MODEL, "max_output_tokens": 64, "stream": True, "input": text}
    return {name: (path, json.dumps(body, separators=(",", ":")).encode()) for name, path, body in (
        ("chat", "/v1/chat/completions", chat), ("messages", "/v1/messages", messages),
        ("responses", "/v1/responses", responses))}


async def turns(base: str, n: int, warm: int) -> dict[str, dict[str, list[float]]]:
    names = ["chat", "messages", "responses"]
    times: dict[str, dict[str, list[float]]] = {name: {"first": [], "end": []} for name in names}
    run = nonce()
    session = _session()
    try:
        for i in range(warm + n):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                path, body = bodies(f"{run}-{name}-{i}")[name]
                timed = await first_chunk(session, base + path, body, HEADERS)
                if timed is None:
                    raise BenchError(f"{name}: a stream request failed")
                if i >= warm:
                    times[name]["first"].append(timed[0] * 1000)
                    times[name]["end"].append(timed[1] * 1000)
    finally:
        await session.close()
    return times


def report(times: dict[str, dict[str, list[float]]]) -> str:
    chat_first = statistics.median(times["chat"]["first"])
    chat_end = statistics.median(times["chat"]["end"])
    lines = ["| endpoint | first event p50 ms | vs chat ms | whole stream p50 ms | vs chat ms |",
             "|---|---:|---:|---:|---:|"]
    for name, t in times.items():
        first, end = statistics.median(t["first"]), statistics.median(t["end"])
        lines.append(f"| {name} | {first:.3f} | {first - chat_first:+.3f} | {end:.3f} | {end - chat_end:+.3f} |")
    return "\n".join(lines)


def critical_path_us(repeat: int = 2000) -> dict[str, float]:
    """In-process: the dialect work on the time-to-first-event path, per request, in µs (median
    of ``repeat``): translating the request, and encoding the first upstream chunk (chat: its SSE
    framing only). Independent of the machine's load, unlike the turns above."""
    import timeit

    from gateway.adapter import Chunk, encode_chunks
    from plugins.dialects.anthropic_messages.request import to_chat as messages_to_chat
    from plugins.dialects.anthropic_messages.stream import MessagesEncoder
    from plugins.dialects.openai_responses.request import to_chat as responses_to_chat
    from plugins.dialects.openai_responses.stream import ResponsesEncoder

    first = (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-ttfc",'
             b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}')
    ask = {name: json.loads(body) for name, (_, body) in bodies("x").items()}
    cases = {
        "chat": lambda: encode_chunks([Chunk(first)]),
        "messages": lambda: (messages_to_chat(ask["messages"]),
                             MessagesEncoder("m", thinking=False).encode([Chunk(first)])),
        "responses": lambda: (responses_to_chat(ask["responses"]),
                              ResponsesEncoder(ask["responses"], "m", 1).encode([Chunk(first)])),
    }
    return {name: statistics.median(timeit.repeat(fn, number=1, repeat=repeat)) * 1e6 for name, fn in cases.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=300)
    p.add_argument("--warm", type=int, default=20)
    args = p.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="llm-gateway-dialects-"))
    procs = Procs(logdir)
    pin = shutil.which("taskset") is not None
    try:
        up_port, env = start_upstream(procs, 1 if pin else None, "--profile", f"{TTFC_MODEL}:hold_ms=20")
        port = free_port(DEFAULT_PORTS["gateway"] + 2)
        gw = procs.start("gateway", [sys.executable, "-m", "gateway", "serve", "--config", str(CONFIG),
                                     "--port", str(port)], 0 if pin else None, env)
        wait_ready("gateway", gw, f"http://127.0.0.1:{port}/health", procs, 60)
        times = asyncio.run(turns(f"http://127.0.0.1:{port}", args.turns, args.warm))
    except BenchError as exc:
        print(f"dialects.py: {exc}; logs in {logdir}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    print(f"{args.turns} turns, upstream {up_port}; one gateway, endpoints in rotating turns")
    print(report(times))
    work = critical_path_us()
    print("\nIn-process work on the first event's path (request translation + first chunk), median µs:")
    print(" | ".join(f"{name} {us:.1f} (+{us - work['chat']:.1f})" for name, us in work.items()))
    shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
