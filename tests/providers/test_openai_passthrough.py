"""OpenAI's own streams: plain content events are relayed as read; from the first event that needs
work, the rest of the read goes event by event."""

from __future__ import annotations

import orjson
import pytest

from plugins.providers.openai import OpenAINativeTranslator

EVENT = b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
    {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None}) + b"\n\n"
DONE = b"data: [DONE]\n\n"
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}\n\n'


@pytest.mark.parametrize("read,relayed", [
    (EVENT, len(EVENT)),
    (EVENT * 5, 5 * len(EVENT)),
    (EVENT + DONE, len(EVENT)),  # the terminator is the gateway's to write
    (EVENT * 2 + USAGE + DONE, 2 * len(EVENT)),  # usage is read
    (EVENT + b'data: {"error":{"message":"boom"}}\n\n', len(EVENT)),  # errors become error events
    (DONE, 0),
    (EVENT + b"data: {not json\n\n" + EVENT, 0),  # a broken event is caught
    (EVENT.replace(b"\n\n", b"\r\n\r\n"), 0),
    (b"event: x\n" + EVENT, 0),
    (EVENT + b"event: error\n" + EVENT, len(EVENT)),
    (EVENT[:-1], 0),  # not on an event boundary
])
def test_how_much_of_a_read_is_relayed_untouched(read, relayed):
    assert OpenAINativeTranslator(client_wants_usage=False).passthrough(read) == relayed
