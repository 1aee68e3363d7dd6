"""Traces reach a real OTLP/HTTP receiver; payloads decoded with the official opentelemetry-proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from plugins.tracing import TRACING
from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.support import drain, openai_provider

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Receiver:
    def __init__(self) -> None:
        self.spans: list = []

    async def traces(self, request: web.Request) -> web.Response:
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        for rs in msg.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
            for ss in rs.scope_spans:
                for span in ss.spans:
                    self.spans.append((service, span))
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", rec.traces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, f"http://127.0.0.1:{server.port}"
    await server.close()


def attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        kind = v.WhichOneof("value")
        out[a.key] = list(x.string_value for x in v.array_value.values) if kind == "array_value" else getattr(v, kind)
    return out


async def test_spans_for_plain_stream_retried_and_failed_requests(gateway, emulator, receiver):
    rec, endpoint = receiver
    emu = await emulator("openai")
    provider = openai_provider(emu.url, retry={"attempts": 1, "backoff_base_s": 0.01})
    gw = await gateway(make_config(provider, telemetry={"endpoint": endpoint, "service_name": "gw-test",
                                                        "schedule_delay_ms": 50}))
    messages = [{"role": "user", "content": "hello trace"}]
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="sk-client-secret-123", max_retries=0) as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.3,
                                             max_tokens=50, extra_headers={"traceparent": TRACEPARENT})
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        await drain(stream)
        emu.state.script(Fault.status(503, "busy"))
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # retried once
        emu.state.script(Fault.status(400, "bad request"))
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        with pytest.raises(openai.NotFoundError):  # rejected before routing: still traced
            await client.chat.completions.create(model="no-such-model", messages=messages)
    await asyncio.to_thread(gw.app[TRACING].force_flush)

    servers = [s for _, s in rec.spans if s.kind == s.SPAN_KIND_SERVER]
    clients = [s for _, s in rec.spans if s.kind == s.SPAN_KIND_CLIENT]
    assert {svc for svc, _ in rec.spans} == {"gw-test"}
    assert len(servers) == 5 and len(clients) == 5  # the retried request made two attempts
    unrouted = servers[4]
    assert unrouted.name == "chat" and attrs(unrouted)["http.response.status_code"] == 404
    assert unrouted.status.code == unrouted.status.STATUS_CODE_ERROR
    servers = servers[:4]

    plain = servers[0]
    a = attrs(plain)
    assert plain.trace_id.hex() == TRACEPARENT.split("-")[1]  # continues the client's trace
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.3 and a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.usage.input_tokens"] == 2 and a["gen_ai.usage.output_tokens"] > 0

    by_parent: dict[bytes, list] = {}
    for c in clients:
        by_parent.setdefault(c.parent_span_id, []).append(c)
    assert [len(by_parent[s.span_id]) for s in servers] == [1, 1, 2, 1]
    assert servers[0].name == "chat gpt-4o-mini"
    first_client = attrs(by_parent[plain.span_id][0])
    assert first_client["gen_ai.provider.name"] == "openai"
    assert first_client["gen_ai.response.finish_reasons"] == ["stop"]

    stream_attrs = attrs(servers[1])
    assert stream_attrs["gen_ai.request.stream"] is True and stream_attrs["gen_ai.response.time_to_first_chunk"] > 0

    retried = by_parent[servers[2].span_id]
    assert [attrs(c)["http.response.status_code"] for c in retried] == [503, 200]
    assert retried[0].status.code == retried[0].status.STATUS_CODE_ERROR

    failed = servers[3]
    assert failed.status.code == failed.status.STATUS_CODE_ERROR and attrs(failed)["http.response.status_code"] == 400

    # The vendor saw the trace context of its own client span.
    sent = next(r for r in emu.state.requests if r.path.endswith("/chat/completions"))
    assert sent.headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    # No key and no prompt text in any span.
    blob = b"".join(s.SerializeToString() for _, s in rec.spans)
    assert b"sk-client-secret-123" not in blob and b"test-key" not in blob and b"hello trace" not in blob


async def test_no_exporter_means_no_request_hooks(gateway, monkeypatch):
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    gw = await gateway()
    assert TRACING not in gw.app
    assert gw.gw.pm.get_plugin("tracing.requests") is None


async def test_dialect_requests_are_traced_under_the_dialect_name(gateway, emulator, receiver):
    rec, endpoint = receiver
    emu = await emulator("openai")
    gw = await gateway(make_config(openai_provider(emu.url, native_dialects=[]),
                                   telemetry={"endpoint": endpoint, "schedule_delay_ms": 50}))
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        await client.messages.create(model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="k", max_retries=0) as client:
        await client.responses.create(model="gpt-4o-mini", input="hi")
    await asyncio.to_thread(gw.app[TRACING].force_flush)
    servers = [s for _, s in rec.spans if s.kind == s.SPAN_KIND_SERVER]
    assert [s.name for s in servers] == ["messages gpt-4o-mini", "responses gpt-4o-mini"]
    assert [attrs(s)["url.path"] for s in servers] == ["/v1/messages", "/v1/responses"]
    assert all(attrs(s)["gen_ai.usage.input_tokens"] > 0 for s in servers)
