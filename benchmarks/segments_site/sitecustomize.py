"""Loaded by ``benchmarks/segments.py`` into a server it starts (this directory on PYTHONPATH, with
``SEGMENTS_OUT`` set): times two segments of every proxied request inside the process.

* ``in -> upstream``: from the request's bytes reaching aiohttp's server protocol to the first
  write of the upstream request;
* ``upstream -> out``: from the upstream's first bytes to the first write to the client.

Nothing else runs between a segment's start and end but this process's own code (no wake-up of
another process), so the figures are what the server's work costs on this path, under whatever
cache state the load leaves. ``SEGMENTS_MARKS`` (``module:Qualified.name,...``) adds, per named
function, the median time from its segment's start to the function's entry. On SIGUSR2 the
medians so far are written to ``SEGMENTS_OUT`` as JSON, and the samples are cleared.

It patches aiohttp's server and client protocols' ``data_received`` and ``StreamWriter``'s two
write methods; any server built on aiohttp can be timed, the relay included. A benchmark aid only:
nothing in the gateway imports it."""

from __future__ import annotations

import os

if os.environ.get("SEGMENTS_OUT"):
    import importlib
    import json
    import signal
    import statistics
    import time
    from typing import Any

    from aiohttp import client_proto, http_writer, web_protocol

    now = time.perf_counter_ns
    state: dict[str, Any] = {"request_in": None, "upstream_in": None, "awaiting_upstream": False}
    segments: dict[str, list[int]] = {"in -> upstream": [], "upstream -> out": []}
    marks: dict[str, list[tuple[str, int]]] = {}

    server_received = web_protocol.RequestHandler.data_received
    client_received = client_proto.ResponseHandler.data_received

    def request_in(self: Any, data: bytes) -> None:
        if state["request_in"] is None:
            state["request_in"] = now()
        return server_received(self, data)

    def upstream_in(self: Any, data: bytes) -> None:
        if state["awaiting_upstream"] and state["upstream_in"] is None:
            state["upstream_in"] = now()
        return client_received(self, data)

    def written(writer: Any) -> None:
        t = now()
        if isinstance(writer._protocol, client_proto.ResponseHandler):
            if state["request_in"] is not None:
                segments["in -> upstream"].append(t - state["request_in"])
                state["request_in"] = None
                state["awaiting_upstream"] = True
        elif state["upstream_in"] is not None:
            segments["upstream -> out"].append(t - state["upstream_in"])
            state["upstream_in"] = None
            state["awaiting_upstream"] = False

    def timed_write(method: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            written(self)
            return method(self, *args, **kwargs)

        return write

    web_protocol.RequestHandler.data_received = request_in
    client_proto.ResponseHandler.data_received = upstream_in
    http_writer.StreamWriter._write = timed_write(http_writer.StreamWriter._write)
    http_writer.StreamWriter._writelines = timed_write(http_writer.StreamWriter._writelines)

    def marked(name: str, fn: Any) -> Any:
        def entered(*args: Any, **kwargs: Any) -> Any:
            if state["request_in"] is not None:
                marks[name].append(("in -> upstream", now() - state["request_in"]))
            elif state["upstream_in"] is not None:
                marks[name].append(("upstream -> out", now() - state["upstream_in"]))
            return fn(*args, **kwargs)

        return entered

    for spec in filter(None, os.environ.get("SEGMENTS_MARKS", "").split(",")):
        module, qualname = spec.split(":")
        owner: Any = importlib.import_module(module)
        *path, attr = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        marks[qualname] = []
        setattr(owner, attr, marked(qualname, getattr(owner, attr)))

    def report(*_: Any) -> None:
        out: dict[str, Any] = {
            name: {"median_us": statistics.median(v) / 1000 if v else None, "n": len(v)}
            for name, v in segments.items()
        }
        out["marks"] = {
            name: {seg: statistics.median([d for s, d in v if s == seg]) / 1000
                   for seg in segments if any(s == seg for s, _ in v)}
            for name, v in marks.items()
        }
        with open(os.environ["SEGMENTS_OUT"], "w") as f:
            json.dump(out, f)
        for v in (*segments.values(), *marks.values()):
            v.clear()

    signal.signal(signal.SIGUSR2, report)
