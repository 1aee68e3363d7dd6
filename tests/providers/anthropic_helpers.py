"""Shared pieces of the anthropic adapter's transform tests: the adapter, request helpers, messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import ProviderConfig
from gateway.operations import CHAT
from plugins.providers.anthropic import AnthropicAdapter, AnthropicOptions

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_adapter(base_url: str | None = "http://emu", **options: Any) -> AnthropicAdapter:
    config = ProviderConfig(name="claude", type="anthropic", base_url=base_url, api_key="sk-ant-test")
    return AnthropicAdapter("claude", config, AnthropicOptions(**options))


def payload(body: dict[str, Any], op=CHAT, **options: Any) -> dict[str, Any]:
    return make_adapter(**options).build_request(op, body, MODEL).json


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": f"claude/{MODEL}", "messages": list(messages), **fields}


USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
