"""The scrubber (``gateway.secrets``) and the redaction plugin's log filter on real log records."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import orjson
import pytest

from gateway.errors import ConfigError, UpstreamStatusError
from gateway.loader import load_data
from gateway.secrets import Scrubber, mask
from plugins.redaction import REDACTOR, LoggingSettings, LogSetup, Redactor
from tests.conftest import make_config

VENDOR_KEY = "sk-proj-" + secrets.token_urlsafe(40)
CLIENT_KEY = "gw-" + secrets.token_urlsafe(24)
ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_urlsafe(60)


@pytest.fixture
def scrubber() -> Redactor:
    return Redactor([VENDOR_KEY, CLIENT_KEY])


@pytest.fixture
def installed(scrubber: Redactor) -> Iterator[LogSetup]:
    setup = LogSetup(scrubber, None)
    setup.install()
    yield setup
    setup.uninstall()


# -- the scrubber ---------------------------------------------------------------------------------

def test_config_literals_keep_their_prefix_and_last_four(scrubber):
    text = f"Incorrect API key provided: {VENDOR_KEY}. Client {CLIENT_KEY} retried."
    assert scrubber.scrub(text) == (
        f"Incorrect API key provided: sk-proj-\u2026{VENDOR_KEY[-4:]}. Client \u2026{CLIENT_KEY[-4:]} retried."
    )


@pytest.mark.parametrize("key, prefix", [
    ("sk-" + "A1b2" * 12, "sk-"),
    (ANTHROPIC_KEY, "sk-ant-"),
    ("sk-or-v1-" + "f0" * 32, "sk-or-"),
    ("xai-" + "Zz9" * 20, "xai-"),
    ("pplx-" + "q7" * 24, "pplx-"),
    ("sk-proj-" + "p_-9" * 30, "sk-proj-"),
])
def test_vendor_key_shapes_are_masked_without_being_configured(key, prefix):
    assert Scrubber().scrub(f"key={key};") == f"key={prefix}\u2026{key[-4:]};"


@pytest.mark.parametrize("text, hidden", [
    ("{'Authorization': 'Bearer secret-token-value-1234', 'Host': 'h'}", "secret-token-value"),
    ("<CIMultiDictProxy('Host': 'h', 'X-Api-Key': 'abc123def456ghi789')>", "abc123def456"),
    ('{"api-key": "0123456789abcdef0123456789abcdef"}', "0123456789abcdef0123"),
    ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("OPENAI_API_KEY=plainvalue99", "plainvalue99"),
    ("curl -H 'api-key: short'", "short"),
])
def test_credential_header_values_are_masked_whatever_they_look_like(text, hidden):
    out = Scrubber().scrub(text)
    assert hidden not in out
    assert out != text


def test_bearer_tokens_in_prose_are_masked():
    out = Scrubber().scrub("sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abc to upstream")
    assert out == "sent Bearer \u2026_abc to upstream"


@pytest.mark.parametrize("text", [
    "GET /v1/models 200", "task-management-system-component-v2", "a Bearer token is required",
    "the api docs", "request_id=req_0123abcd status=200 latency_ms=12.3",
])
def test_ordinary_text_is_returned_unchanged_as_the_same_object(scrubber, text):
    assert scrubber.scrub(text) is text


def test_scrubbing_is_idempotent(scrubber):
    text = f"{{'Authorization': 'Bearer {CLIENT_KEY}', 'x-api-key': 'short1'}} {VENDOR_KEY} Bearer {ANTHROPIC_KEY}"
    once = scrubber.scrub(text)
    assert scrubber.scrub(once) == once
    for secret in (CLIENT_KEY, VENDOR_KEY, ANTHROPIC_KEY, "short1"):
        assert secret not in once


def test_short_values_are_masked_whole():
    assert mask("k-1234") == "[redacted]"
    assert mask("sk-abc") == "sk-[redacted]"
    assert Scrubber(["k-1234"]).scrub("used k-1234 here") == "used [redacted] here"
    assert Scrubber(["abc"]).scrub("abc is too short to look for alone") == "abc is too short to look for alone"


def test_many_literals_and_shared_prefixes_match_the_longest(scrubber):
    keys = ["gw-" + secrets.token_hex(16) for _ in range(500)]
    long = keys[0] + "EXTRA"
    many = Scrubber([*keys, long])
    text = f"a {keys[7]} b {long} c {keys[-1]}"
    assert many.scrub(text) == f"a \u2026{keys[7][-4:]} b \u2026XTRA c \u2026{keys[-1][-4:]}"


def test_scrub_error_changes_the_message_clients_and_tracebacks_see(scrubber):
    error = UpstreamStatusError(f"oai: Incorrect API key provided: {VENDOR_KEY}", upstream_status=401)
    scrubber.scrub_error(error)
    assert VENDOR_KEY not in error.message
    assert VENDOR_KEY not in str(error)
    assert VENDOR_KEY not in error.to_json().decode()


def test_scrub_headers_masks_credential_headers_whole(scrubber):
    out = scrubber.scrub_headers({"Authorization": "Bearer x", "X-Api-Key": "y" * 30, "Accept": VENDOR_KEY})
    assert out == {
        "Authorization": "[redacted]", "X-Api-Key": "\u2026yyyy", "Accept": f"sk-proj-\u2026{VENDOR_KEY[-4:]}",
    }


# -- the filter on real log records ---------------------------------------------------------------

def test_records_from_any_logger_reach_handlers_scrubbed(installed, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.deep.child.logger").debug("calling with %s and %r", VENDOR_KEY, {"key": CLIENT_KEY})
    assert VENDOR_KEY not in caplog.text and CLIENT_KEY not in caplog.text
    assert f"sk-proj-\u2026{VENDOR_KEY[-4:]}" in caplog.text
    assert caplog.records[0].args is None


def test_exception_tracebacks_are_scrubbed(installed, caplog):
    try:
        try:
            raise KeyError(CLIENT_KEY)
        except KeyError as exc:
            raise RuntimeError(f"upstream said: Incorrect API key provided: {VENDOR_KEY}") from exc
    except RuntimeError:
        logging.getLogger("llm_gateway.test").exception("request failed")
    assert "Traceback" in caplog.text and "RuntimeError" in caplog.text
    assert VENDOR_KEY not in caplog.text and CLIENT_KEY not in caplog.text
    assert caplog.records[0].exc_info is None and "KeyError" in caplog.records[0].exc_text


def test_a_handler_added_after_install_gets_scrubbed_records(installed):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        logging.getLogger("late").warning("key %s", VENDOR_KEY, stack_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    assert "key sk-proj-\u2026" in stream.getvalue() and VENDOR_KEY not in stream.getvalue()


def test_handler_filters_catch_records_built_without_the_factory(installed):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(installed.filter)
    record = logging.makeLogRecord({"msg": "headers %s", "args": ({"Authorization": f"Bearer {CLIENT_KEY}"},)})
    handler.handle(record)
    assert CLIENT_KEY not in stream.getvalue() and "Bearer \u2026" in stream.getvalue()


def test_structured_fields_and_unformattable_args_are_scrubbed(installed, caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("llm_gateway.test")
    log.info("access", extra={"fields": {"model": VENDOR_KEY, "status": 404, "nested": [CLIENT_KEY]}})
    log.info("broken %d", f"not a number {VENDOR_KEY}")
    fields = caplog.records[0].fields
    assert fields["status"] == 404 and VENDOR_KEY not in fields["model"] and CLIENT_KEY not in fields["nested"][0]
    assert "unformattable" in caplog.records[1].getMessage() and VENDOR_KEY not in caplog.text


def test_uninstall_restores_the_factory_and_handlers(scrubber):
    before = logging.getLogRecordFactory()
    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(handler)
    try:
        setup = LogSetup(scrubber, LoggingSettings(format="json", level="debug"))
        setup.install()
        assert logging.getLogRecordFactory() is not before and setup.filter in handler.filters
        setup.uninstall()
        assert logging.getLogRecordFactory() is before
        assert setup.filter not in handler.filters and handler.formatter is None
    finally:
        logging.getLogger().removeHandler(handler)


def test_json_format_writes_one_scrubbed_object_per_line(scrubber):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    setup = LogSetup(scrubber, LoggingSettings(format="json", level="info"))
    setup.install()
    try:
        logging.getLogger("llm_gateway.access").info("line", extra={"fields": {"model": VENDOR_KEY, "status": 200}})
        try:
            raise ValueError(CLIENT_KEY)
        except ValueError:
            logging.getLogger("x").exception("boom")
        logging.getLogger("x").debug("below the configured level")
    finally:
        setup.uninstall()
        logging.getLogger().removeHandler(handler)
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["logger"] == "llm_gateway.access" and first["status"] == 200 and first["message"] == "line"
    assert first["model"] == f"sk-proj-\u2026{VENDOR_KEY[-4:]}"
    assert second["level"] == "error" and "ValueError" in second["exception"]
    assert CLIENT_KEY not in stream.getvalue()


# -- the plugin in a gateway ----------------------------------------------------------------------

async def test_gateway_installs_the_filter_and_its_cleanup_removes_it(gateway, caplog):
    before = logging.getLogRecordFactory()
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": CLIENT_KEY}]}))
    assert isinstance(gw.app[REDACTOR], Redactor)
    logging.getLogger("anything").warning("client key %s", CLIENT_KEY)
    assert CLIENT_KEY not in caplog.text and "client key \u2026" in caplog.text
    await gw.runner.cleanup()
    assert logging.getLogRecordFactory() is before


def test_logging_section_is_validated_with_its_field_path():
    with pytest.raises(ConfigError) as info:
        load_data(make_config(logging={"format": "xml"}), {})
    assert info.value.problems[0][0] == "logging.format"
    loaded = load_data(make_config(logging={"format": "json", "level": "DEBUG"}), {})
    assert loaded.config.section("logging") == LoggingSettings(format="json", level="debug")
