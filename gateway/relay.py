"""Writing responses to the client: JSON bodies, error envelopes, and SSE relayed chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from gateway.adapter import Chunk
from gateway.errors import GatewayError

DONE = b"data: [DONE]\n\n"


def json_response(body: Any, headers: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def error_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> web.Response:
    # The gateway's own headers (x-request-id, its x-ratelimit-*) win over forwarded vendor ones.
    merged = {**error.headers, **(headers or {})}
    return web.Response(
        body=error.to_json(), status=error.status, headers=merged, content_type="application/json"
    )


def error_event(error: GatewayError) -> bytes:
    """The SSE form of an error once streaming began (the OpenAI SDK raises on it)."""
    return b"data: " + error.to_json() + b"\n\n"


class SSEResponse(EventSourceResponse):
    """aiohttp-sse's response (event-stream headers, ``: ping`` keep-alives, and a kernel-level
    send timeout for stalled clients) with a raw-bytes write for pre-serialised chunks."""

    def __init__(self, headers: Mapping[str, str], *, send_timeout: float, ping_interval: float) -> None:
        super().__init__(
            headers=headers, sep="\n", allow_all_methods=True,
            send_timeout=send_timeout, ping_interval=ping_interval,
        )

    async def send_chunk(self, chunk: Chunk) -> None:
        await self.write(b"data: " + chunk.data + b"\n\n")

    async def send_batch(self, batch: list[Chunk] | bytes) -> None:
        """Chunks decoded from one upstream read go out in one write (bytes: relayed as read)."""
        if type(batch) is bytes:
            await self.write(batch)
        elif len(batch) == 1:
            await self.write(b"data: " + batch[0].data + b"\n\n")
        else:
            await self.write(b"".join([b"data: " + c.data + b"\n\n" for c in batch]))

    async def close_stream(self, tail: bytes = b"") -> None:
        # Cancelled, not awaited: the ping task ends on its own at the next loop turn, and the
        # stream does not wait a turn for it.
        self.stop_pinging()
        await self.write_eof(tail)

    def stop_pinging(self) -> None:
        """Idempotent; also for streams that ended by an error or a client that left."""
        if self._ping_task is not None and not self._ping_task.done():
            self._ping_task.cancel()


async def flatten(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Chunk]:
    """One chunk at a time over the first batch and the rest (only built for stream wrappers)."""
    for chunk in first:
        yield chunk
    async for batch in rest:
        for chunk in batch:
            yield chunk
