#!/usr/bin/env python3
"""Fast mock OpenAI upstream for the benchmarks.

A raw ``asyncio.Protocol`` HTTP/1.1 server (keep-alive, Content-Length or chunked request bodies) on uvloop
when it is installed, so that the mock costs as little CPU as possible and the thing being measured is
what sits in front of it. It is *not* a general HTTP server: it knows just enough for the load generators
(wrk, aiohttp) and for the gateway's and relay's aiohttp clients.

Endpoints (any path ending in these works, so ``/v1/...`` and bare paths both do):

* ``POST .../chat/completions`` -- non-stream: a small fixed JSON body with ``usage``;
  ``"stream": true``: N content chunks (the first also carries ``role``), a finish chunk, a usage chunk
  when ``stream_options.include_usage`` is true, then ``data: [DONE]``.
* ``POST .../completions`` -- the legacy text completion, same shape rules.
* ``POST .../embeddings`` -- one ``--embedding-dim`` vector per input.
* ``GET .../models`` -- the ``--models`` list.  ``GET /health`` -- 200.

Any ``Authorization: Bearer <anything>`` (or ``api-key``/``x-api-key``) is accepted; a request without one
gets a 401 unless ``--no-auth-check``.

Stream shape per request, first match wins:

1. headers ``x-bench-chunks``, ``x-bench-delay-ms`` (between chunks), ``x-bench-hold-ms`` (after the first
   chunk, before the rest -- makes buffering in a proxy show up as time-to-first-chunk);
2. the same as query parameters ``?chunks=50&delay_ms=0&hold_ms=0``;
3. a per-model profile, ``--profile bench-ttfc:hold_ms=20,chunks=50`` (a gateway usually forwards
   neither client headers nor the query string, but it does forward the model name);
4. the defaults ``--chunks`` / ``--delay-ms`` / ``--hold-ms``.

With no delay and no hold every SSE event is still its own ``transport.write`` (its own send()), as a
token-by-token upstream would do; the receiver may read several at once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import signal
import sys
import time
from urllib.parse import parse_qs

try:  # orjson is a gateway dependency; fall back to json for a bare interpreter
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover
    _loads = json.loads

    def _dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


CREATED = int(time.time())
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
STREAM_KEYS = ("chunks", "delay_ms", "hold_ms")


class Settings:
    def __init__(self, args: argparse.Namespace) -> None:
        self.defaults = {"chunks": args.chunks, "delay_ms": args.delay_ms, "hold_ms": args.hold_ms}
        self.profiles: dict[str, dict[str, float]] = {}
        for spec in args.profile:
            model, _, rest = spec.partition(":")
            prof: dict[str, float] = {}
            for item in filter(None, rest.split(",")):
                k, _, v = item.partition("=")
                if k not in STREAM_KEYS:
                    raise SystemExit(f"--profile {spec!r}: unknown key {k!r} (use {', '.join(STREAM_KEYS)})")
                prof[k] = float(v)
            self.profiles[model] = prof
        self.models = [m for m in args.models.split(",") if m]
        self.embedding_dim = args.embedding_dim
        self.auth_check = not args.no_auth_check
        self.models_body = _dumps(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "bench"} for m in self.models],
            }
        )
        self._cache: dict[tuple, object] = {}

    # -- cached response bodies (bounded: a benchmark uses a handful of models) --------------------------
    def cached(self, key: tuple, build):
        val = self._cache.get(key)
        if val is None:
            val = build()
            if len(self._cache) < 4096:
                self._cache[key] = val
        return val


USAGE = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}


def chat_body(model: str) -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def text_body(model: str) -> bytes:
    return _dumps(
        {
            "id": "cmpl-bench",
            "object": "text_completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": "Hello from the bench upstream.",
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def _frame(event: bytes) -> bytes:
    """One SSE event wrapped as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(event), event)


def stream_frames(model: str, chunks: int, usage: bool, chat: bool) -> list[bytes]:
    out = []
    if chat:
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model}
        for i in range(chunks):
            delta = {"role": "assistant", "content": f"tok{i} "} if i == 0 else {"content": f"tok{i} "}
            out.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    else:
        base = {"id": "cmpl-bench", "object": "text_completion", "created": CREATED, "model": model}
        for i in range(chunks):
            out.append({**base, "choices": [{"index": 0, "text": f"tok{i} ", "finish_reason": None}]})
        out.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    if usage:
        out.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks},
            }
        )
    frames = [_frame(b"data: " + _dumps(o) + b"\n\n") for o in out]
    frames.append(_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return frames


def embeddings_body(model: str, n: int, dim: int) -> bytes:
    vec = [round(0.001 * (i + 1), 6) for i in range(dim)]
    return _dumps(
        {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": vec} for i in range(n)],
            "usage": {"prompt_tokens": 4 * n, "total_tokens": 4 * n},
        }
    )


def error_body(message: str, etype: str, code: str | None = None) -> bytes:
    return _dumps({"error": {"message": message, "type": etype, "code": code, "param": None}})


class UpstreamProtocol(asyncio.Protocol):
    settings: Settings  # set on the class by serve()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a delayed stream is being written; later pipelined requests wait
        self.closed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    # -- parsing -------------------------------------------------------------------------------------
    def process(self) -> None:
        while not self.busy and not self.closed:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.send(431, error_body("header too large", "invalid_request_error"), close=True)
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.send(400, error_body("bad request line", "invalid_request_error"), close=True)
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            start = end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                parsed = self.dechunk(start)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                try:
                    n = int(headers.get("content-length") or 0)
                except ValueError:
                    self.send(400, error_body("bad content-length", "invalid_request_error"), close=True)
                    return
                if n > MAX_BODY:
                    self.send(413, error_body("body too large", "invalid_request_error"), close=True)
                    return
                if len(buf) < start + n:
                    return
                body, consumed = bytes(buf[start : start + n]), start + n
            del buf[:consumed]
            conn = headers.get("connection", "").lower()
            keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
            self.handle(method, target, headers, body, keep)

    def dechunk(self, pos: int) -> tuple[bytes, int] | None:
        buf, out = self.buf, bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0] or b"0", 16)
            pos = eol + 2
            if size == 0:
                end = buf.find(b"\r\n\r\n", pos - 2)  # no trailers expected: "0\r\n\r\n"
                return (bytes(out), end + 4) if end >= 0 else None
            if len(buf) < pos + size + 2:
                return None
            out += buf[pos : pos + size]
            pos += size + 2

    # -- responses -----------------------------------------------------------------------------------
    def send(
        self,
        status: int,
        body: bytes,
        keep: bool = True,
        close: bool = False,
        ctype: bytes = b"application/json",
    ) -> None:
        keep = keep and not close
        head = b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n%b\r\n" % (
            status,
            REASONS.get(status, "OK").encode(),
            ctype,
            len(body),
            b"" if keep else b"Connection: close\r\n",
        )
        self.transport.write(head + body)
        if not keep:
            self.transport.close()
            self.closed = True

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, keep: bool) -> None:
        s = self.settings
        path, _, query = target.partition("?")
        if path == "/health":
            return self.send(200, b'{"status":"ok"}', keep)
        if s.auth_check and not (
            headers.get("authorization", "").startswith("Bearer ") or "api-key" in headers or "x-api-key" in headers
        ):
            return self.send(401, error_body("missing API key", "authentication_error", "invalid_api_key"), keep)
        if path.endswith("/models"):
            if method != "GET":
                return self.send(405, error_body("use GET", "invalid_request_error"), keep)
            return self.send(200, s.models_body, keep)
        kind = (
            "chat"
            if path.endswith("/chat/completions")
            else "text"
            if path.endswith("/completions")
            else "embed"
            if path.endswith("/embeddings")
            else None
        )
        if kind is None:
            return self.send(404, error_body(f"no route {path}", "invalid_request_error", "not_found"), keep)
        if method != "POST":
            return self.send(405, error_body("use POST", "invalid_request_error"), keep)
        try:
            req = _loads(body)
            if not isinstance(req, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            return self.send(400, error_body(f"invalid JSON: {exc}", "invalid_request_error"), keep)
        model = str(req.get("model") or "bench-model")
        if kind == "embed":
            inp = req.get("input")
            n = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
            return self.send(200, s.cached(("e", model, n), lambda: embeddings_body(model, n, s.embedding_dim)), keep)
        if not req.get("stream"):
            build = chat_body if kind == "chat" else text_body
            return self.send(200, s.cached((kind, model), lambda: build(model)), keep)
        opts = req.get("stream_options")
        usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        shape = self.stream_shape(model, headers, query)
        chunks = max(0, int(shape["chunks"]))
        frames = s.cached(
            ("s", kind, model, chunks, usage), lambda: stream_frames(model, chunks, usage, kind == "chat")
        )
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n%b\r\n" % (b"" if keep else b"Connection: close\r\n")
        )
        delay, hold = shape["delay_ms"] / 1000.0, shape["hold_ms"] / 1000.0
        write = self.transport.write
        if delay <= 0 and hold <= 0:
            write(head)
            for f in frames:
                write(f)
            if not keep:
                self.transport.close()
                self.closed = True
            return None
        self.busy = True
        write(head + frames[0])
        loop = asyncio.get_running_loop()
        loop.call_later(hold if hold > 0 else delay, self.stream_next, frames, 1, delay, keep)
        return None

    def stream_shape(self, model: str, headers: dict[str, str], query: str) -> dict[str, float]:
        shape = dict(self.settings.defaults)
        shape.update(self.settings.profiles.get(model, {}))
        if query:
            q = parse_qs(query)
            for k in STREAM_KEYS:
                if k in q:
                    shape[k] = float(q[k][0])
        for k in STREAM_KEYS:
            v = headers.get("x-bench-" + k.replace("_", "-"))
            if v:
                shape[k] = float(v)
        return shape

    def stream_next(self, frames: list[bytes], i: int, delay: float, keep: bool) -> None:
        if self.closed or self.transport.is_closing():
            return
        if delay <= 0:  # only a hold was asked for: the rest goes out back to back
            for f in frames[i:]:
                self.transport.write(f)
            i = len(frames)
        else:
            self.transport.write(frames[i])
            i += 1
        if i < len(frames):
            asyncio.get_running_loop().call_later(delay, self.stream_next, frames, i, delay, keep)
            return
        self.busy = False
        if not keep:
            self.transport.close()
            self.closed = True
        elif self.buf:
            self.process()


async def serve(args: argparse.Namespace) -> None:
    UpstreamProtocol.settings = Settings(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, args.host, args.port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"bench upstream listening on http://{args.host}:{port} (loop={type(loop).__module__})", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18900)
    p.add_argument("--chunks", type=int, default=50, help="default content chunks per stream")
    p.add_argument("--delay-ms", type=float, default=0.0, help="default delay between stream chunks")
    p.add_argument("--hold-ms", type=float, default=0.0, help="default delay after the first chunk")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MODEL:k=v,...",
        help="per-model stream shape, e.g. bench-ttfc:hold_ms=20 (keys: chunks, delay_ms, hold_ms)",
    )
    p.add_argument("--models", default="bench-model,bench-ttfc,text-embedding-bench")
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--no-auth-check", action="store_true", help="also accept requests without any key")
    p.add_argument("--no-uvloop", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uvloop = None if args.no_uvloop else importlib.util.find_spec("uvloop")
    if uvloop is not None:
        import uvloop

        uvloop.run(serve(args))
        return
    asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
