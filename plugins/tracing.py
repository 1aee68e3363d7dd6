"""OpenTelemetry traces to an OTLP collector, with the GenAI semantic conventions.

A server span per request and a client span per upstream attempt (so retries and fallbacks are
visible), W3C ``traceparent`` accepted from the client and propagated to the vendor. Prompt and
completion text are never recorded unless ``telemetry.capture_content`` is on; keys never are.

When no exporter is configured (no ``telemetry.endpoint`` and no ``OTEL_EXPORTER_OTLP_*``
variable), this plugin registers no request hooks at all, so tracing costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, ConfigDict, Field

from gateway import GatewayError, Outcome, RequestContext, StashKey, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import GATEWAY
from gateway.transport import Attempt

OPERATION_NAMES = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
PARAMS = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
          "max_tokens": "gen_ai.request.max_tokens", "max_completion_tokens": "gen_ai.request.max_tokens",
          "frequency_penalty": "gen_ai.request.frequency_penalty",
          "presence_penalty": "gen_ai.request.presence_penalty", "seed": "gen_ai.request.seed"}
SERVER_SPAN: StashKey[Span] = StashKey("tracing.server_span")
CLIENT_SPAN: StashKey[Span] = StashKey("tracing.client_span")
TRACING: web.AppKey[TracerProvider] = web.AppKey("llm_gateway.tracing")
ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None  # None: on when an endpoint is configured here or in the environment
    service_name: str | None = None  # else OTEL_SERVICE_NAME, else "llm-gateway"
    endpoint: str | None = None  # base URL; /v1/traces is appended for http/protobuf
    traces_endpoint: str | None = None  # full URL, used as is
    protocol: Literal["http/protobuf", "grpc"] | None = None  # else OTEL_EXPORTER_OTLP_PROTOCOL
    headers: dict[str, str] = Field(default_factory=dict)
    sampler: str | None = None  # the OTEL_TRACES_SAMPLER names; else that variable
    sampler_arg: float | None = None
    capture_content: bool = False
    schedule_delay_ms: int = Field(1000, ge=1)


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"telemetry": TelemetryConfig}


def tracing_enabled(cfg: TelemetryConfig, env: dict[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or env.get("OTEL_TRACES_EXPORTER") == "none":
        return False
    if cfg.enabled is not None:
        return cfg.enabled
    return bool(cfg.endpoint or cfg.traces_endpoint or any(env.get(k) for k in ENV_ENDPOINTS))


def make_sampler(name: str | None, arg: float | None) -> Sampler | None:
    if name is None:
        return None  # the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG itself
    ratio = TraceIdRatioBased(1.0 if arg is None else arg)
    return {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF, "traceidratio": ratio,
            "parentbased_always_on": ParentBased(ALWAYS_ON), "parentbased_always_off": ParentBased(ALWAYS_OFF),
            "parentbased_traceidratio": ParentBased(ratio)}[name]


def make_exporter(cfg: TelemetryConfig, env: dict[str, str]) -> Any:
    protocol = cfg.protocol or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    kwargs: dict[str, Any] = {"headers": cfg.headers} if cfg.headers else {}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        if cfg.traces_endpoint or cfg.endpoint:
            kwargs["endpoint"] = cfg.traces_endpoint or cfg.endpoint
        return GrpcExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if cfg.traces_endpoint:
        kwargs["endpoint"] = cfg.traces_endpoint
    elif cfg.endpoint:
        kwargs["endpoint"] = cfg.endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(**kwargs)


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    cfg = config.section("telemetry") or TelemetryConfig()
    env = dict(os.environ)
    if not tracing_enabled(cfg, env):
        return
    name = cfg.service_name or env.get("OTEL_SERVICE_NAME") or "llm-gateway"
    provider = TracerProvider(resource=Resource.create({"service.name": name}),
                              sampler=make_sampler(cfg.sampler, cfg.sampler_arg))
    exporter = make_exporter(cfg, env)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=cfg.schedule_delay_ms))
    app[TRACING] = provider
    gw = app[GATEWAY]
    gw.pm.register(RequestTracer(provider, cfg.capture_content, gw.scrubber.scrub), name="tracing.requests")


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    provider = app.get(TRACING)
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)  # flushing may block on the network


def epoch_ns(perf_start: float) -> int:
    return time.time_ns() - int((time.perf_counter() - perf_start) * 1e9)


class RequestTracer:
    """The per-request hooks, registered only when tracing is on."""

    def __init__(self, provider: TracerProvider, capture_content: bool, scrub: Callable[[str], str]) -> None:
        self.scrub = scrub
        self.tracer = provider.get_tracer("llm_gateway")
        self.propagator = TraceContextTextMapPropagator()
        self.capture_content = capture_content

    @hookimpl
    def gateway_request_started(self, ctx: RequestContext) -> None:
        op = ctx.op.name if ctx.op else "models"
        operation = OPERATION_NAMES.get(op, op)
        parent = self.propagator.extract(ctx.request.headers)
        span = self.tracer.start_span(operation, context=parent, kind=SpanKind.SERVER,
                                      start_time=epoch_ns(ctx.started))
        span.set_attributes({
            "gen_ai.operation.name": operation, "http.request.method": ctx.request.method,
            "url.path": ctx.request.path, "llm_gateway.request_id": ctx.request_id,
        })
        ctx[SERVER_SPAN] = span

    @hookimpl(tryfirst=True)
    def gateway_request_received(self, ctx: RequestContext) -> None:
        span = ctx.get(SERVER_SPAN)
        if span is None:
            return
        model = self.scrub(ctx.model or "")  # client input: never let a pasted key into a span
        span.update_name(f"{span.name} {model}")
        attrs: dict[str, Any] = {
            "gen_ai.request.model": model, "gen_ai.request.stream": ctx.stream,
            "llm_gateway.route": ",".join(t.label for t in ctx.targets),
        }
        if ctx.principal is not None:
            attrs["llm_gateway.client"] = ctx.principal.name
        for key, attr in PARAMS.items():
            value = ctx.body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = value
        if self.capture_content and ctx.op is not None:
            attrs["gen_ai.input.messages"] = str(ctx.body.get(ctx.op.input_field))[:8192]
        span.set_attributes(attrs)

    @hookimpl
    def gateway_upstream_attempt(self, ctx: RequestContext, attempt: Attempt) -> None:
        server = ctx.get(SERVER_SPAN)
        if server is None:
            return
        operation = OPERATION_NAMES.get(ctx.op.name, ctx.op.name) if ctx.op else "chat"
        span = self.tracer.start_span(f"{operation} {attempt.model}", context=set_span_in_context(server),
                                      kind=SpanKind.CLIENT)
        span.set_attributes({
            "gen_ai.operation.name": operation, "gen_ai.provider.name": attempt.provider_type,
            "gen_ai.system": attempt.provider_type, "gen_ai.request.model": attempt.model,
            "llm_gateway.provider": attempt.provider, "llm_gateway.attempt": attempt.number,
        })
        self.propagator.inject(attempt.headers, context=set_span_in_context(span))
        attempt.stash[CLIENT_SPAN] = span

    @hookimpl
    def gateway_upstream_attempt_done(self, ctx: RequestContext, attempt: Attempt, error: GatewayError | None) -> None:
        span = attempt.stash.get(CLIENT_SPAN)
        if span is None:
            return
        if attempt.status is not None:
            span.set_attribute("http.response.status_code", attempt.status)
        if error is not None:
            mark_error(span, error.code or error.type)
            span.end()
        else:
            ctx[CLIENT_SPAN] = span  # the serving attempt: ended with the request, usage attached

    @hookimpl
    def gateway_response(self, ctx: RequestContext, response: dict[str, Any]) -> None:
        span = ctx.get(CLIENT_SPAN)
        if span is None:
            return
        reasons = [c.get("finish_reason") for c in response.get("choices", ()) if c.get("finish_reason")]
        attrs: dict[str, Any] = {"gen_ai.response.model": response.get("model") or "",
                                 "gen_ai.response.id": response.get("id") or ""}
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        if self.capture_content:
            attrs["gen_ai.output.messages"] = str([c.get("message") or c.get("text") for c in
                                                   response.get("choices", ())])[:8192]
        span.set_attributes(attrs)

    @hookimpl
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        server = ctx.get(SERVER_SPAN)
        if server is None:
            return
        attrs: dict[str, Any] = {"http.response.status_code": outcome.status, "llm_gateway.attempts": outcome.attempts}
        if outcome.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = outcome.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = outcome.usage.completion_tokens
        if outcome.ttft_s is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = outcome.ttft_s
        if outcome.cache:
            attrs["llm_gateway.cache"] = outcome.cache
        if outcome.provider:
            attrs["llm_gateway.provider"] = outcome.provider
        if outcome.cost_usd is not None:
            attrs["llm_gateway.cost_usd"] = outcome.cost_usd
        client = ctx.get(CLIENT_SPAN)
        for span in (client, server):
            if span is None:
                continue
            span.set_attributes(attrs)
            if outcome.status >= 400:
                mark_error(span, outcome.error_code or outcome.error_type or str(outcome.status))
            span.end()


def mark_error(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
