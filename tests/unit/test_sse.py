"""The upstream SSE decoder follows the WHATWG framing rules, however the bytes are split."""

from __future__ import annotations

import pytest

from gateway.sse import SSEDecoder, SSEEvent

STREAM = (
    b": keep-alive comment\n\n"
    b"event: message_start\ndata: {\"a\":1}\n\n"
    b"data: line one\ndata: line two\n\n"
    b"data:no-space\r\n\r\n"
    b"id: 7\rdata: cr only\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent(b'{"a":1}', "message_start"),
    SSEEvent(b"line one\nline two"),
    SSEEvent(b"no-space"),
    SSEEvent(b"cr only", None, "7"),
    SSEEvent(b"[DONE]", None, "7"),
]


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_any_split_gives_the_same_events(size):
    assert decode([STREAM[i:i + size] for i in range(0, len(STREAM), size)]) == EXPECTED


def test_unterminated_last_event_is_dispatched_at_end_of_stream():
    assert decode([b"data: a\n\ndata: tail"]) == [SSEEvent(b"a"), SSEEvent(b"tail")]


def test_event_name_resets_after_each_event():
    assert decode([b"event: x\ndata: 1\n\ndata: 2\n\n"]) == [SSEEvent(b"1", "x"), SSEEvent(b"2")]
