"""An offline provider: deterministic replies, real usage counts, streams with a configurable
per-chunk delay, and no network. It speaks the OpenAI wire format through an in-process
transport, so requests take exactly the path a real OpenAI-compatible vendor's would."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.adapter import UpstreamRequest
from gateway.transport import RawResponse
from plugins.providers.openai import OpenAIAdapter

LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco"
)
LOREM = tuple(LOREM_TEXT.split())


class MockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: Literal["echo", "lorem"] = "echo"
    chunk_delay_s: float = Field(0.0, ge=0, le=10)
    words_per_chunk: int = Field(1, ge=1)
    embedding_dimensions: int = Field(16, ge=1, le=4096)


def count_tokens(value: Any) -> int:
    """Whitespace words in every string of a request value: deterministic and dependency-free."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_tokens(v) for v in value)
    if isinstance(value, dict):
        return sum(count_tokens(v) for k, v in value.items() if k in ("content", "text", "prompt"))
    return 0


def last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def embedding(text: str, dims: int) -> list[float]:
    raw = hashlib.sha256(text.encode()).digest()
    while len(raw) < dims * 4:
        raw += hashlib.sha256(raw).digest()
    ints = struct.unpack(f"<{dims}I", raw[: dims * 4])
    return [round(i / 2**32 * 2 - 1, 6) for i in ints]


class MockTransport:
    def __init__(self, options: MockOptions) -> None:
        self.options = options

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def reply_words(self, body: dict[str, Any]) -> list[str]:
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 64
        if self.options.reply == "lorem":
            return [LOREM[i % len(LOREM)] for i in range(min(int(limit), 4096))]
        said = last_user_text(body.get("messages") or []) if "messages" in body else str(body.get("prompt", ""))
        return ("You said: " + said).split()[: int(limit)]

    def usage(self, body: dict[str, Any], completion: int) -> dict[str, int]:
        prompt = count_tokens(body.get("messages") or body.get("prompt") or body.get("input"))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def send(self, req: UpstreamRequest) -> RawResponse:
        body = req.json or {}
        if req.method == "GET":
            return self._ok({"object": "list", "data": []})
        if req.url.endswith("/embeddings"):
            return self._ok(self._embeddings(body))
        words = self.reply_words(body)
        text = " ".join(words)
        base = {"id": f"mock-{time.monotonic_ns()}", "created": int(time.time()), "model": body.get("model")}
        usage = self.usage(body, len(words))
        if req.url.endswith("/chat/completions"):
            message = {"role": "assistant", "content": text}
            return self._ok({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]})
        return self._ok({**base, "object": "text_completion", "usage": usage, "choices": [
            {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]})

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        dims = body.get("dimensions") or self.options.embedding_dimensions
        data = [{"object": "embedding", "index": i, "embedding": embedding(str(t), int(dims))}
                for i, t in enumerate(items)]
        tokens = count_tokens(items)
        return {"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @staticmethod
    def _ok(obj: Any) -> RawResponse:
        return RawResponse(200, {"Content-Type": "application/json"}, orjson.dumps(obj))

    @asynccontextmanager
    async def stream(self, req: UpstreamRequest) -> AsyncIterator[MockStream]:
        yield MockStream(self, req.json or {}, req.url.endswith("/chat/completions"))


class MockStream:
    status = 200
    headers: Mapping[str, str] = {"Content-Type": "text/event-stream"}

    def __init__(self, transport: MockTransport, body: dict[str, Any], chat: bool) -> None:
        self.transport = transport
        self.body = body
        self.chat = chat

    async def read(self) -> bytes:
        return b""

    async def iter_any(self) -> AsyncIterator[bytes]:
        opts = self.transport.options
        words = self.transport.reply_words(self.body)
        base = {"id": f"mock-{time.monotonic_ns()}", "created": int(time.time()), "model": self.body.get("model"),
                "object": "chat.completion.chunk" if self.chat else "text_completion"}
        step = opts.words_per_chunk
        pieces = [" ".join(words[i:i + step]) + " " for i in range(0, len(words), step)] or [""]
        pieces[-1] = pieces[-1].rstrip()
        for i, piece in enumerate(pieces):
            if i and opts.chunk_delay_s:
                await asyncio.sleep(opts.chunk_delay_s)
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0 else {"content": piece},
                 "finish_reason": None} if self.chat else {"index": 0, "text": piece, "finish_reason": None}
            )
            yield b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"
        final = {"index": 0, "delta": {}, "finish_reason": "stop"} if self.chat else \
            {"index": 0, "text": "", "finish_reason": "stop"}
        yield b"data: " + orjson.dumps({**base, "choices": [final]}) + b"\n\n"
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage = self.transport.usage(self.body, len(words))
            yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
        yield b"data: [DONE]\n\n"


class MockAdapter(OpenAIAdapter):
    options_model: ClassVar[type[BaseModel]] = MockOptions
    default_base_url: ClassVar[str | None] = "mock://offline"
    requires_api_key: ClassVar[bool] = False
    native_dialects = frozenset()  # it speaks chat only: every dialect is translated for it

    def auth_headers(self) -> dict[str, str]:
        return {}

    def create_transport(self) -> MockTransport:
        return MockTransport(self.options)

    def models_request(self) -> UpstreamRequest | None:
        return None  # the configured list is the listing
