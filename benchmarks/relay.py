#!/usr/bin/env python3
"""The "bare aiohttp relay": the floor a Python/aiohttp gateway is measured against.

One aiohttp server, one shared ClientSession; every request's body goes to the same path on the upstream
and the upstream's bytes are streamed back as they arrive (``iter_any``). No parsing, routing, auth,
logging or metrics. Uses uvloop when installed, as the gateway does.
"""

import argparse
import asyncio

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

SESSION = web.AppKey("session", ClientSession)
UPSTREAM = web.AppKey("upstream", str)
FORWARD = ("Authorization", "Content-Type", "Accept")


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {h: request.headers[h] for h in FORWARD if h in request.headers}
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[SESSION].request(request.method, url, data=body, headers=headers) as up:
        resp = web.StreamResponse(status=up.status)
        resp.content_type = up.content_type
        if up.content_length is not None:
            resp.content_length = up.content_length
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def session_ctx(app: web.Application):
    app[SESSION] = ClientSession(
        connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None), auto_decompress=False
    )
    yield
    await app[SESSION].close()


def main() -> None:
    p = argparse.ArgumentParser(description="bare aiohttp relay (benchmark floor)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18901)
    p.add_argument("--upstream", default="http://127.0.0.1:18900")
    args = p.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", relay)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        loop=loop,
        print=lambda msg: print(f"bench relay -> {args.upstream}: {msg}", flush=True),
    )


if __name__ == "__main__":
    main()
