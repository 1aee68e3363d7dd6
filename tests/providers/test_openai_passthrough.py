"""OpenAI's own streams: whole reads of plain content events are relayed as is; anything that needs
work goes event by event."""

from __future__ import annotations

import orjson
import pytest

from plugins.providers.openai import OpenAINativeTranslator

EVENT = b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
    {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None}) + b"\n\n"


@pytest.mark.parametrize("read,relayed", [
    (EVENT, True),
    (EVENT * 5, True),
    (EVENT + b"data: [DONE]\n\n", False),  # the terminator is the gateway's to write
    (EVENT + b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}\n\n', False),  # usage is read
    (EVENT + b'data: {"error":{"message":"boom"}}\n\n', False),  # errors become error events
    (EVENT + b"data: {not json\n\n" + EVENT, False),  # a broken event is caught
    (EVENT.replace(b"\n\n", b"\r\n\r\n"), False),
    (b"event: x\n" + EVENT, False),
    (EVENT[:-1], False),  # not on an event boundary
])
def test_which_reads_are_relayed_untouched(read, relayed):
    assert OpenAINativeTranslator(client_wants_usage=False).passthrough(read) is relayed
