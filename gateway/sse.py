"""Incremental Server-Sent Events decoder for upstream streams (WHATWG framing rules).

Handles ``\\n``, ``\\r\\n`` and ``\\r`` line ends (also when split across reads), multi-line
``data``, ``event`` names and ``:`` comments, so no adapter ever splits on separators itself.
Data stays ``bytes``: the OpenAI-compatible passthrough relays it without decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not self._buf and not self._data and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            fast = self._feed_simple(chunk)
            if fast is not None:
                return fast
        if self._buf:
            chunk = self._buf + chunk
        if b"\r" in chunk:
            # A trailing CR may be the first half of CRLF: keep it until the next read.
            tail = b"\r" if chunk.endswith(b"\r") else b""
            if tail:
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        lines = chunk.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > MAX_LINE_BYTES:
            raise ValueError("upstream SSE line exceeds the size limit")  # never buffer without bound
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    @property
    def idle(self) -> bool:
        """At an event boundary: nothing buffered, no event half-built."""
        return not self._buf and not self._data and self._event is None

    def _feed_simple(self, chunk: bytes) -> list[SSEEvent] | None:
        """The shape almost every read has: whole ``data: ...`` events and nothing else. None
        when anything else is in there (names, comments, multi-line data): the general path."""
        events = []
        for part in chunk.split(b"\n\n")[:-1]:
            if not part.startswith(b"data: ") or b"\n" in part:
                return None
            events.append(SSEEvent(part[6:], None, self._id))
        return events

    def flush(self) -> list[SSEEvent]:
        """At end of stream: a pending unterminated event is dispatched (lenient: some vendors
        close the connection right after the last ``data:`` line)."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r"), events)
            self._buf = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(SSEEvent(data, self._event, self._id))
                self._data = []
            self._event = None
            return
        if line[0] == 58:  # ":" comment, e.g. keep-alives
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
