"""Canonical chunks → Responses stream events, as each batch arrives (nothing is held).

``response.created`` and ``response.in_progress`` go out with the first upstream chunk; each
output item is announced (``output_item.added``, for text also ``content_part.added``) before
the deltas that use its index; a terminal ``response.completed`` / ``response.incomplete`` /
``response.failed`` carries the whole response. Every event has its ``sequence_number``.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialect import ChunkEncoder
from gateway.errors import GatewayError
from plugins.dialects.openai_responses.response import call_item, envelope, finished, message_item

TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete"}


class ResponsesEncoder(ChunkEncoder):
    def __init__(self, body: dict[str, Any], model: str | None, created: int) -> None:
        super().__init__()
        self.body = body
        self.model = model
        self.created = created
        self.seq = 0
        self.resp: dict[str, Any] = {}
        self.output: list[dict[str, Any]] = []  # finished items
        self.item: dict[str, Any] | None = None  # the open item
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_calls index → its item
        self.finish: str | None = None
        self.base = ""

    def event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.seq, **payload})
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def start(self, obj: dict[str, Any], out: list[bytes]) -> None:
        self.base = str(obj.get("id") or self.created)
        self.resp = envelope(self.body, f"resp_{self.base}", obj.get("model") or self.model, self.created)
        out.append(self.event("response.created", {"response": self.resp}))
        out.append(self.event("response.in_progress", {"response": self.resp}))

    def delta(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.text(delta["content"], out)
        for call in delta.get("tool_calls") or ():
            self.call(call, out)
        if choice.get("finish_reason"):
            self.close(out)
            self.finish = choice["finish_reason"]

    def where(self) -> dict[str, Any]:
        assert self.item is not None
        return {"item_id": self.item["id"], "output_index": len(self.output)}

    def text(self, text: str, out: list[bytes]) -> None:
        if self.item is None or self.item["type"] != "message":
            self.close(out)
            self.item = message_item(f"msg_{self.base}", "", "in_progress")
            added = {**self.item, "content": []}
            out.append(self.event("response.output_item.added", {"output_index": len(self.output), "item": added}))
            out.append(self.event("response.content_part.added", {**self.where(), "content_index": 0, "part": {
                "type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
        self.item["content"][0]["text"] += text
        out.append(self.event("response.output_text.delta", {**self.where(), "content_index": 0, "delta": text,
                                                             "logprobs": []}))

    def call(self, call: dict[str, Any], out: list[bytes]) -> None:
        k = call.get("index", 0)
        fn = call.get("function") or {}
        if k not in self.calls:
            self.close(out)
            self.item = self.calls[k] = call_item(f"fc_{self.base}_{k}", call.get("id"), fn.get("name"), "",
                                                  "in_progress")
            out.append(self.event("response.output_item.added", {"output_index": len(self.output),
                                                                 "item": dict(self.item)}))
        if fn.get("arguments") and self.item is self.calls[k]:
            self.item["arguments"] += fn["arguments"]
            out.append(self.event("response.function_call_arguments.delta", {**self.where(),
                                                                             "delta": fn["arguments"]}))

    def close(self, out: list[bytes]) -> None:
        item = self.item
        if item is None:
            return
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            out.append(self.event("response.output_text.done", {**self.where(), "content_index": 0,
                                                                "text": part["text"], "logprobs": []}))
            out.append(self.event("response.content_part.done", {**self.where(), "content_index": 0, "part": part}))
        else:
            out.append(self.event("response.function_call_arguments.done", {
                **self.where(), "name": item["name"], "arguments": item["arguments"]}))
        out.append(self.event("response.output_item.done", {"output_index": len(self.output), "item": item}))
        self.output.append(item)
        self.item = None

    def end(self) -> bytes:
        out: list[bytes] = []
        self.begin({}, out)
        self.close(out)
        final = finished(self.resp, self.finish, self.output, self.usage)
        out.append(self.event(TERMINAL[final["status"]], {"response": final}))
        return b"".join(out)

    def error(self, error: GatewayError) -> bytes:
        out: list[bytes] = []
        self.begin({}, out)
        failed = {**self.resp, "status": "failed", "output": self.output,
                  "error": {"code": error.code or "server_error", "message": error.message}}
        out.append(self.event("response.failed", {"response": failed}))
        return b"".join(out)
