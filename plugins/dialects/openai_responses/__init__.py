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
from typing import TYPE_CHECKING, Any

import orjson

from gateway.context import StashKey
from gateway.dialect import Dialect, DialectRequest, NativeCall, RelayEncoder, StreamEncoder
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


STATE: StashKey[DialectRequest] = StashKey("openai_responses")


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
        ctx[STATE] = DialectRequest(raw, body, refusal)
        return chat

    def upstream(self, op: Operation, ctx: RequestContext, target: Target) -> NativeCall | dict[str, Any]:
        relay = ctx[STATE].relay(self.name, target, "/responses", native.parse, native.RelayTranslator)
        return ctx.body if relay is None else relay

    def render(self, op: Operation, ctx: RequestContext, result: dict[str, Any]) -> bytes:
        state = ctx[STATE]
        return state.relayed_bytes(ctx) or orjson.dumps(response(state.body, result))

    def stream_encoder(self, op: Operation, ctx: RequestContext) -> StreamEncoder:
        state = ctx[STATE]
        if state.native:
            # The vendor's own stream: a failure after it began is told in OpenAI's error event.
            return RelayEncoder(error_event)
        return ResponsesEncoder(state.body, ctx.model, int(time.time()))
