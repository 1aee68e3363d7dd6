"""The generic dialect pieces of the core: config checks, and the native relay's model rewrite."""

from __future__ import annotations

import orjson
import pytest

from gateway.dialect import installed_dialects, with_model
from gateway.errors import ConfigError
from gateway.loader import load_data


def test_unknown_native_dialect_names_its_field_path():
    with pytest.raises(ConfigError) as err:
        load_data({"providers": [{"name": "m", "type": "mock", "models": ["m1"], "native_dialects": ["nope"]}]})
    assert err.value.problems[0][0] == "providers[0].native_dialects[0]"
    assert "anthropic_messages" in err.value.problems[0][1]


def test_builtin_dialects_are_installed():
    assert {"anthropic_messages", "openai_responses"} <= installed_dialects()


@pytest.mark.parametrize("raw, expected", [
    (b'{"model": "alias",\n  "input": "x"}', b'{"model":"real-model",\n  "input": "x"}'),
    (b'{"input": "x","model"  :  "alias"}', b'{"input": "x","model":"real-model"}'),
])
def test_with_model_replaces_only_the_model(raw, expected):
    assert with_model(raw, orjson.loads(raw), "real-model") == expected


def test_with_model_reencodes_when_the_value_is_ambiguous():
    raw = b'{"model": "a", "metadata": {"model": "a"}, "input": "x"}'
    out = with_model(raw, orjson.loads(raw), "b")
    assert orjson.loads(out) == {"model": "b", "metadata": {"model": "a"}, "input": "x"}


def test_with_model_keeps_the_bytes_when_nothing_changes():
    raw = b'{"model":  "same"}'
    assert with_model(raw, orjson.loads(raw), "same") is raw
