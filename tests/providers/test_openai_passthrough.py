"""OpenAI's own streams: plain content events are relayed as read; only the end of a read is looked
at, and from the first event there that needs work, the rest of the read goes event by event."""

from __future__ import annotations

import orjson
import pytest

from gateway.adapter import encode_chunks
from gateway.dispatch import relay_read, translate
from gateway.sse import SSEDecoder
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
    (EVENT + b"data: {not json\n\n", len(EVENT)),  # a broken event at the end is caught (decoded)
    (b"data: {not json\n\n" + EVENT, 0),  # ... and so is one before it
    (EVENT + b'data: {"x":1}\ndata: {"y":2}\n\n' + EVENT, 0),  # a multi-line event needs decoding
    (EVENT + b": keep-alive\n\n" + EVENT, 0),
    (EVENT * 2 + EVENT[:30], 2 * len(EVENT)),  # a read ending mid-event: the whole events go
    (EVENT + b": keep-alive\n\n", len(EVENT)),
    (EVENT.replace(b"\n\n", b"\r\n\r\n"), 0),
    (b"event: x\n" + EVENT, 0),
    (EVENT + b"event: error\n" + EVENT, len(EVENT)),
    (EVENT[:-1], 0),  # not a whole event
    (EVENT + b'data: {"id":"c","choices":[],"usage": {"prompt_tokens":1}}\n\n' + DONE, len(EVENT)),
    # a read of one event (the usual read) takes a shorter way to the same answers
    (USAGE, 0),
    (b'data: {"id":"c","choices":[],"usage": {"prompt_tokens":1}}\n\n', 0),
    (b'data: {"error":{"message":"boom"}}\n\n', 0),
    (b"data: {not json\n\n", 0),
    (b'data: {"a":1}\rdata: {"b":2}\n\n', 0),
])
def test_how_much_of_a_read_is_relayed_untouched(read, relayed):
    assert OpenAINativeTranslator(client_wants_usage=False).passthrough(read) == relayed


def stream_bytes() -> bytes:
    content = [b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}], "usage": None}) + b"\n\n"
        for i in range(12)]
    return b"".join(content) + USAGE + DONE


def client_bytes(reads: list[bytes], raw: bool) -> tuple[bytes, dict | None]:
    translator = OpenAINativeTranslator(client_wants_usage=False)
    decoder = SSEDecoder()
    out = b""
    for data in reads:
        if raw:
            part, failure = relay_read(data, decoder, translator)
        else:
            chunks, failure = translate(decoder.feed, data, translator)
            part = encode_chunks(chunks)
        assert failure is None
        out += part
        if translator.done:
            break
    return out, translator.usage


@pytest.mark.parametrize("size", [1, 7, 64, 199, 200, 201, 450, 4096])
def test_relaying_reads_as_they_come_equals_decoding_every_event(size):
    """Whatever the read boundaries (mid-line, between the two newlines of a boundary, inside
    the usage chunk), the client gets the same bytes and the gateway the same usage."""
    body = stream_bytes()
    reads = [body[i:i + size] for i in range(0, len(body), size)]
    assert client_bytes(reads, raw=True) == client_bytes(reads, raw=False)
    out, usage = client_bytes(reads, raw=True)
    assert usage == {"prompt_tokens": 1}
    assert out.count(b"data: ") == 12 and b"usage" not in out.replace(b'"usage":null', b"")
