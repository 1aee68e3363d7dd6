"""The OpenAI Responses dialect (``openai_responses``): ``POST /v1/responses``, stateless, over
every provider.

Native first: to a provider that serves Responses itself (``openai``, ``azure_openai`` in its v1
style, ``grok``, ``openrouter``; ``providers[].native_dialects`` says otherwise per deployment)
the client's body goes with only the model rewritten and the answer comes back byte for byte;
``store``, ``previous_response_id``, ``conversation`` and ``background`` then work as the vendor
has them. Any other provider gets the canonical chat request, and those four are refused.
Per-field decisions: docs/dialects.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway.context import StashKey
from gateway.dialect import Dialect, NativeCall, RelayEncoder, StreamEncoder, speaks, with_model
from gateway.errors import InvalidRequestError
from gateway.operations import CHAT, Operation
from gateway.relay import error_event
from plugins.dialects.openai_responses import native
from plugins.dialects.openai_responses.request import check, to_chat
from plugins.dialects.openai_responses.response import response
from plugins.dialects.openai_responses.stream import ResponsesEncoder

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.routing import Target

__all__ = ["OpenAIResponses"]


@dataclass(slots=True)
class State:
    raw: bytes  # the body as the client sent it
    body: dict[str, Any]  # ... and parsed
    refusal: InvalidRequestError | None  # what a translated provider must answer
    native: bool = False  # the serving attempt was relayed natively


STATE: StashKey[State] = StashKey("openai_responses")


class OpenAIResponses(Dialect):
    def __init__(self) -> None:
        self.op = Operation("responses", "/v1/responses", True, "messages", input_must_be_list=True,
                            dialect=self, upstream=CHAT)

    def operations(self) -> Iterable[Operation]:
        return (self.op,)

    def accept(self, op: Operation, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = ctx.body
        check(body)
        chat, refusal = to_chat(body)
        ctx[STATE] = State(raw, body, refusal)
        return chat

    def upstream(self, op: Operation, ctx: RequestContext, target: Target) -> NativeCall | dict[str, Any]:
        state = ctx[STATE]
        provider = target.provider
        state.native = speaks(provider, self.name)
        if state.native:
            content = with_model(state.raw, state.body, target.model)
            request = provider.adapter.native_request("/responses", content, {})
            return NativeCall(request, native.parse, native.RelayTranslator)
        if state.refusal is not None:
            raise state.refusal
        return ctx.body

    def render(self, op: Operation, ctx: RequestContext, result: dict[str, Any]) -> bytes:
        state = ctx[STATE]
        if state.native and ctx.response_bytes is not None:
            return ctx.response_bytes
        return orjson.dumps(response(state.body, result))

    def stream_encoder(self, op: Operation, ctx: RequestContext) -> StreamEncoder:
        state = ctx[STATE]
        if state.native:
            # The vendor's own stream: a failure after it began is told in OpenAI's error event.
            return RelayEncoder(error_event)
        return ResponsesEncoder(state.body, ctx.model, int(time.time()))
