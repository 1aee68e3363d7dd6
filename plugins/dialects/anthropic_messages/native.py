"""Messages relayed to a provider that serves the Messages API itself: the vendor's bytes go to
the client as they came; only the usage is read on the way (for limits, metrics and spend).
The anthropic provider adapter's reverse mappings are reused for that reading."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from gateway.adapter import StreamTranslator
from gateway.sse import SSEDecoder
from plugins.providers.anthropic.chat import chat_completion, openai_usage

# Events that are looked into; every other event is relayed unread.
READ = frozenset({"message_start", "message_delta", "message_stop", "error"})


def parse(body: bytes) -> dict[str, Any]:
    """A native Message → the canonical chat completion (usage, plugins, cache)."""
    payload = orjson.loads(body)
    return chat_completion(payload, str(payload.get("model") or ""))


class RelayTranslator(StreamTranslator):
    """Relays every read whole and watches the events for usage and the stream's end."""

    raw = True

    def __init__(self) -> None:
        super().__init__()
        self.decoder = SSEDecoder()
        self.raw_usage: dict[str, Any] = {}

    def passthrough(self, data: bytes) -> int:
        for ev in self.decoder.feed(data):
            if ev.event in READ:
                # The client gets the vendor's bytes either way; bad JSON leaves usage unknown.
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    self.watch(ev.event, ev.data)
        return len(data)

    def watch(self, name: str | None, data: bytes) -> None:
        if name == "message_stop" or name == "error":
            # The vendor's own error event went to the client as it is: the stream is over.
            self.done = True
            return
        if name not in ("message_start", "message_delta"):
            return
        obj = orjson.loads(data)
        found = (obj.get("message") or {}).get("usage") if name == "message_start" else obj.get("usage")
        if isinstance(found, dict):
            self.raw_usage.update({k: v for k, v in found.items() if v is not None})
            self.usage = openai_usage(self.raw_usage)
