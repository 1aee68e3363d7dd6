"""gateway.yaml validation: every problem names its field path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import interpolate
from gateway.errors import ConfigError
from gateway.loader import load_data
from tests.conftest import MOCK_PROVIDER, make_config


def problems(config: dict, env: dict | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        load_data(config, env or {})
    return dict(exc.value.problems)


def test_interpolation_forms():
    data, missing = interpolate(
        {"a": "${A}", "b": "${B:-fallback}", "c": ["x-${A}-y", "${C:+on}"], "d": "${NOPE}"},
        {"A": "1", "C": "set"},
    )
    assert data == {"a": "1", "b": "fallback", "c": ["x-1-y", "on"], "d": ""}
    assert missing == [("d", "environment variable NOPE is not set")]


def test_unknown_provider_type_lists_installed_types():
    p = problems(make_config(
        MOCK_PROVIDER, MOCK_PROVIDER | {"name": "b"}, MOCK_PROVIDER | {"name": "c", "type": "nope"}
    ))
    assert "providers[2].type" in p
    assert "installed:" in p["providers[2].type"] and "openai" in p["providers[2].type"]


def test_unknown_keys_duplicates_and_bad_values_name_their_paths():
    config = make_config(
        MOCK_PROVIDER | {"colour": "red"},
        MOCK_PROVIDER | {"timeouts": {"idle_s": -1}},
        server={"port": "many"},
        models=[{"name": "x", "targets": ["ghost/model", "mock/mock-1"]}],
        mystery={"a": 1},
        plugins={"disabled": ["nonexistent"]},
    )
    p = problems(config)
    assert p["providers[0].colour"] == "unknown key"
    assert "providers[1].timeouts.idle_s" in p
    assert "server.port" in p
    assert "mystery" in p and "no installed plugin claims it" in p["mystery"]
    config = make_config(MOCK_PROVIDER, MOCK_PROVIDER, models=[{"name": "x", "targets": ["ghost/model"]}],
                         plugins={"disabled": ["nonexistent"]})
    p = problems(config)
    assert "duplicate provider name" in p["providers[1].name"]
    assert "models[0].targets[0]" in p
    assert "plugins.disabled[0]" in p


def test_adapter_options_are_validated_by_the_adapter_model():
    p = problems(make_config(MOCK_PROVIDER | {"options": {"reply": "shout"}}))
    assert "providers[0].options.reply" in p


def test_missing_key_variable_is_an_error_unless_the_provider_is_disabled():
    vendor = {"name": "oai", "type": "openai", "api_key": "${OPENAI_API_KEY}", "models": ["m"]}
    p = problems(make_config(MOCK_PROVIDER, vendor))
    assert "OPENAI_API_KEY" in p["providers[1].api_key"]
    switched = vendor | {"enabled": "${OPENAI_API_KEY:+true}"}
    loaded = load_data(make_config(MOCK_PROVIDER, switched), {})
    assert [p.enabled for p in loaded.config.providers] == [True, False]
    loaded = load_data(make_config(MOCK_PROVIDER, switched), {"OPENAI_API_KEY": "sk-x"})
    assert loaded.config.providers[1].enabled
    assert loaded.config.providers[1].api_key.get_secret_value() == "sk-x"
    assert "sk-x" not in repr(loaded.config)


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_check_config_cli(tmp_path):
    good = run_cli("check-config", "gateway.yaml")
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - {name: a, type: mock}\n  - {name: b, type: mock}\n  - {name: c, type: nope}\n")
    out = run_cli("check-config", str(bad))
    assert out.returncode == 2
    assert "providers[2].type" in out.stderr and "Traceback" not in out.stderr
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("providers: [\n")
    out = run_cli("check-config", str(garbage))
    assert out.returncode == 2 and "not valid YAML" in out.stderr


def test_version_and_providers_commands():
    assert run_cli("--version").stdout.startswith("llm-gateway ")
    listing = run_cli("providers").stdout
    for name in ("mock", "openai", "anthropic", "azure_openai", "cohere", "perplexity", "grok", "blackbox",
                 "openrouter"):
        assert name in listing
