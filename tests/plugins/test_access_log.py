"""The access-log plugin: one structured line per request on ``llm_gateway.access``."""

from __future__ import annotations

import logging

import plugins.access_log as access_log
from tests.conftest import make_config

USER = [{"role": "user", "content": "hello world"}]


ON = make_config(access_log={"enabled": True})


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "llm_gateway.access"]


async def test_one_line_per_request_with_structured_fields(gateway, http, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway(ON)
    async with http.post(gw.v1 + "/chat/completions", json={"model": "mock-1", "messages": USER},
                         headers={"x-request-id": "req-test-1"}) as resp:
        assert resp.status == 200
    [record] = access_records(caplog)
    fields = record.fields
    assert fields["request_id"] == "req-test-1" and fields["status"] == 200 and fields["provider"] == "mock"
    assert (fields["model"], fields["prompt_tokens"], fields["completion_tokens"]) == ("mock-1", 2, 4)
    assert fields["operation"] == "chat" and fields["attempts"] == 1 and fields["ttft_ms"] is None
    line = record.getMessage()
    assert line.startswith("request_id=req-test-1 principal=- operation=chat provider=mock model=mock-1")
    assert " status=200 " in line and " cache=- attempts=1" in line


async def test_client_chosen_text_is_quoted_so_it_cannot_forge_a_line(gateway, http, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway(ON)
    model = 'nope status=200\nrequest_id=forged "x"'
    async with http.post(gw.v1 + "/chat/completions", json={"model": model, "messages": USER}) as resp:
        assert resp.status == 404
    [record] = access_records(caplog)
    line = record.getMessage()
    assert "\n" not in line
    assert 'model="nope status=200\\nrequest_id=forged \\"x\\""' in line
    assert " status=404 error_type=invalid_request_error " in line


async def test_nothing_is_formatted_below_the_logger_level(gateway, http, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="llm_gateway.access")
    calls: list[object] = []
    monkeypatch.setattr(access_log, "line", lambda entry: calls.append(entry) or "")
    gw = await gateway(ON)
    async with http.post(gw.v1 + "/chat/completions", json={"model": "mock-1", "messages": USER}) as resp:
        assert resp.status == 200
    assert calls == [] and access_records(caplog) == []


async def test_off_by_default_with_no_request_hook(gateway):
    gw = await gateway()
    assert gw.gw.pm.get_plugin("access_log.requests") is None
    assert not gw.gw.on_request_finished or all(
        impl.plugin_name != "access_log.requests"
        for impl in gw.gw.pm.hook.gateway_request_finished.get_hookimpls())


def test_render_quotes_only_what_needs_it():
    assert [access_log.render(v) for v in (None, True, 12.5, "mock-1", "a b", "", "tab\t")] == [
        "-", "true", "12.5", "mock-1", '"a b"', '""', '"tab\\t"',
    ]
