"""The Anthropic Messages dialect (``anthropic_messages``): ``POST /v1/messages``,
``POST /v1/messages/count_tokens`` and Anthropic's model list, over every provider.

Native first: to a provider that serves the Messages API itself (the ``anthropic`` type) the
client's body goes with only the model rewritten, with its ``anthropic-version`` and
``anthropic-beta``, and the answer comes back byte for byte. Any other provider gets the
canonical chat request (``request``), and its answer is rendered back (``response``, ``stream``).
Per-field decisions: docs/dialects.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.context import StashKey
from gateway.dialect import Dialect, DialectRequest, NativeCall, RelayEncoder, RouteHandler, StreamEncoder
from gateway.errors import GatewayError
from gateway.operations import CHAT, Operation
from plugins.dialects.anthropic_messages import native, response
from plugins.dialects.anthropic_messages.count_tokens import FORWARDED, count_tokens
from plugins.dialects.anthropic_messages.request import check, to_chat
from plugins.dialects.anthropic_messages.stream import MessagesEncoder

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.reload import Reloader
    from gateway.routing import Target

__all__ = ["AnthropicMessages"]
# Sampling's top_k, under the name of each provider type whose chat adapter takes it.
TOP_K = {"anthropic": "top_k", "cohere": "k"}


@dataclass(slots=True)
class State(DialectRequest):
    thinking: bool = False  # the client asked for thinking: reasoning text is rendered as thinking blocks


STATE: StashKey[State] = StashKey("anthropic_messages")


def forwarded(request: web.Request) -> dict[str, str]:
    return {name: request.headers[name] for name in FORWARDED if name in request.headers}


def error_event(error: GatewayError) -> bytes:
    return b"event: error\ndata: " + response.error_body(error) + b"\n\n"


class AnthropicMessages(Dialect):
    def __init__(self) -> None:
        self.op = Operation("messages", "/v1/messages", True, "messages", input_must_be_list=True,
                            dialect=self, upstream=CHAT)

    def operations(self) -> Iterable[Operation]:
        return (self.op,)

    def routes(self, live: Reloader) -> Iterable[tuple[str, str, RouteHandler]]:
        # Not an operation of the generic handler (there may be no upstream call at all), but an
        # Operation all the same: plugins and metrics name it.
        op = Operation("count_tokens", "/v1/messages/count_tokens", False, "messages", input_must_be_list=True,
                       dialect=self, upstream=CHAT)
        return (("POST", op.path, partial(count_tokens, live=live, dialect=self, op=op)),)

    def accept(self, op: Operation, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = ctx.body
        check(body)
        chat, refusal = to_chat(body)
        thinking = body.get("thinking")
        ctx.response_headers["request-id"] = ctx.request_id  # where the SDK reads it from
        ctx[STATE] = State(raw, body, refusal, forwarded(ctx.request),
                           thinking=isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"))
        return chat

    def upstream(self, op: Operation, ctx: RequestContext, target: Target) -> NativeCall | dict[str, Any]:
        relay = ctx[STATE].relay(self.name, target, "/messages", native.parse, native.RelayTranslator)
        if relay is not None:
            return relay
        provider = target.provider
        body = ctx.body
        if "top_k" in body:
            body = dict(body)
            top_k = body.pop("top_k")
            if provider.type in TOP_K:  # chat has no top_k; these adapters take it
                body[TOP_K[provider.type]] = top_k
        return body

    def render(self, op: Operation, ctx: RequestContext, result: dict[str, Any]) -> bytes:
        state = ctx[STATE]
        return state.relayed_bytes(ctx) or orjson.dumps(response.message(result, thinking=state.thinking))

    def stream_encoder(self, op: Operation, ctx: RequestContext) -> StreamEncoder:
        state = ctx[STATE]
        if state.native:
            return RelayEncoder(error_event)
        return MessagesEncoder(ctx.model, thinking=state.thinking)

    def error_response(self, error: GatewayError, headers: Mapping[str, str]) -> web.Response:
        return response.error_response(error, headers)

    def claims(self, request: web.Request) -> bool:
        return "anthropic-version" in request.headers  # every Anthropic SDK and Claude Code send it

    def models_listing(self, listing: dict[str, Any]) -> dict[str, Any]:
        return response.models_page(listing)
