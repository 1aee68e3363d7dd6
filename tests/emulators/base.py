"""Shared data of the vendor emulators: state, scripted faults, errors, SSE events, vendor hooks.

Vendor modules only describe *what* a vendor says (routes, validation, bodies, events); server.py decides
*how* it is delivered (recording, faults, delays, disconnect accounting), so every vendor misbehaves the
same way when a test asks it to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal[
    "status", "delay_first_byte", "bad_json", "html_error",  # answered before any byte of a normal reply
    "drop_mid_stream", "bad_sse", "stall", "no_terminal", "stream_error",  # only taken by streaming replies
]
STREAM_FAULTS = frozenset({"drop_mid_stream", "bad_sse", "stall", "no_terminal", "stream_error"})

DEFAULT_MESSAGES = {
    400: "Bad request", 401: "Invalid API key", 402: "Payment required", 403: "Forbidden", 404: "Not found",
    408: "Request timeout", 413: "Request too large", 422: "Unprocessable entity", 429: "Rate limit exceeded",
    500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
    529: "Overloaded",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased, so tests need not guess the client's casing
    json: Any  # parsed body; None for bodiless requests, the raw text when it was not JSON


@dataclass
class Fault:
    """One-shot scripted misbehaviour, consumed by the next request it applies to (FIFO)."""

    kind: FaultKind
    status_code: int = 500
    message: str | None = None
    error_type: str | None = None  # vendor error type/code; None → the vendor's default for status_code
    body: Any = None  # explicit body instead of the vendor-shaped one (dict → JSON, str → text)
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # delay_first_byte
    after: int = 1  # stream faults fire after this many data events were written
    path: str | None = None  # only requests whose path ends with this (None: any request)

    @classmethod
    def status(cls, status_code: int, message: str | None = None, *, error_type: str | None = None,
               body: Any = None, headers: dict[str, str] | None = None, retry_after: float | None = None,
               path: str | None = None) -> Fault:
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["retry-after"] = f"{retry_after:g}"
        return cls("status", status_code, message, error_type, body, hdrs, path=path)

    @classmethod
    def delay_first_byte(cls, seconds: float, *, path: str | None = None) -> Fault:
        return cls("delay_first_byte", seconds=seconds, path=path)

    @classmethod
    def bad_json(cls, *, path: str | None = None) -> Fault:
        return cls("bad_json", status_code=200, path=path)

    @classmethod
    def html_error(cls, status_code: int = 502, *, path: str | None = None) -> Fault:
        return cls("html_error", status_code, path=path)

    @classmethod
    def drop_mid_stream(cls, after: int = 1, *, path: str | None = None) -> Fault:
        return cls("drop_mid_stream", after=after, path=path)

    @classmethod
    def bad_sse(cls, after: int = 1, *, path: str | None = None) -> Fault:
        return cls("bad_sse", after=after, path=path)

    @classmethod
    def stall(cls, after: int = 1, *, path: str | None = None) -> Fault:
        return cls("stall", after=after, path=path)

    @classmethod
    def no_terminal(cls, *, path: str | None = None) -> Fault:
        return cls("no_terminal", path=path)

    @classmethod
    def stream_error(cls, after: int = 1, message: str | None = None, *, error_type: str | None = None,
                     path: str | None = None) -> Fault:
        return cls("stream_error", 500, message, error_type, after=after, path=path)


@dataclass
class ToolReply:
    """Overrides for the automatic tool-call reply (see replies.plan_reply)."""

    name: str | None = None  # default: the tool named by tool_choice, else the first tool
    arguments: dict[str, Any] | None = None  # default: derived from the tool's JSON schema


@dataclass
class EmulatorState:
    api_key: str = "test-key"
    chunk_delay: float = 0.0  # seconds between stream events
    reply_text: str | None = None  # fixed reply instead of the derived "Hello from …" text
    tool_reply: ToolReply | None = None
    known_models: list[str] | None = None  # when set, other models get the vendor's 404
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # When set, streams pause after their first data event until the test sets it.
    release: asyncio.Event | None = None
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)  # first data event written
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)  # a stream handler ended (any reason)
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)  # the client went away mid-stream
    streams_opened: int = 0
    streams_closed: int = 0
    client_disconnects: int = 0

    @property
    def active_streams(self) -> int:
        return self.streams_opened - self.streams_closed

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def script(self, *faults: Fault) -> EmulatorState:
        self.faults.extend(faults)
        return self

    def take_fault(self, path: str, *, streaming: bool) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.path is not None and not path.endswith(fault.path):
                continue
            if (fault.kind in STREAM_FAULTS) == streaming:
                return self.faults.pop(i)
        return None


class ApiError(Exception):
    """Raised by handlers; rendered by the vendor's error_body. `body` bypasses the vendor shape."""

    def __init__(self, status: int, message: str | None = None, *, type: str | None = None,
                 param: str | None = None, code: Any = None, headers: dict[str, str] | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message or DEFAULT_MESSAGES.get(status, f"HTTP {status}")
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.body = body


@dataclass
class SSE:
    data: Any = None  # dict → JSON; str → sent verbatim
    event: str | None = None
    comment: str | None = None  # a ": comment" line instead of an event
    terminal: bool = False  # dropped by the no_terminal fault

    def encode(self) -> bytes:
        if self.comment is not None:
            return f": {self.comment}\n\n".encode()
        # Compact separators, as the vendors send (byte-level relay tests compare against this).
        data = self.data if isinstance(self.data, str) else json.dumps(self.data, separators=(",", ":"))
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {data}\n\n".encode()


@dataclass
class StreamReply:
    events: list[SSE]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Vendor:
    """How one vendor authenticates and shapes its errors."""

    name: str
    authenticate: Callable[[web.Request, EmulatorState], None]  # raises ApiError
    error_body: Callable[[ApiError], Any]
    stream_error: Callable[[ApiError], list[SSE]]  # the vendor's in-stream error event(s)
    success_headers: Callable[[], dict[str, str]] = dict


@dataclass
class Call:
    request: web.Request
    state: EmulatorState
    body: Any
