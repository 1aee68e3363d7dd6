"""Responses relayed to a provider that serves the Responses API itself: the vendor's bytes go
to the client as they came; only the usage is read on the way (limits, metrics, spend)."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from gateway.adapter import StreamTranslator
from gateway.sse import SSEDecoder
from plugins.dialects.openai_responses.response import chat_completion, chat_usage

# The terminal events, which carry the whole response and its usage.
TERMINAL = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})


def parse(body: bytes) -> dict[str, Any]:
    """A native Response → the canonical chat completion (usage, plugins, cache)."""
    return chat_completion(orjson.loads(body))


class RelayTranslator(StreamTranslator):
    """Relays every read whole and watches for the terminal event (and its usage)."""

    raw = True

    def __init__(self) -> None:
        super().__init__()
        self.decoder = SSEDecoder()

    def passthrough(self, data: bytes) -> int:
        for ev in self.decoder.feed(data):
            name = (ev.event or "").encode()
            if name in TERMINAL or name == b"error":
                self.done = True
                # The client gets the vendor's bytes either way; bad JSON leaves usage unknown.
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    self.usage = chat_usage((orjson.loads(ev.data).get("response") or {}).get("usage"))
        return len(data)
