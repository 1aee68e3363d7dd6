from __future__ import annotations

import pytest

from gateway.errors import ModelNotFoundError
from gateway.loader import load_data
from gateway.registry import ProviderRegistry
from gateway.routing import Router
from tests.conftest import MOCK_PROVIDER, make_config


def router(**sections) -> Router:
    config = load_data(make_config(
        MOCK_PROVIDER | {"name": "a", "models": ["m1", "shared"]},
        MOCK_PROVIDER | {"name": "openai", "models": ["gpt"]},
        MOCK_PROVIDER | {"name": "c", "models": ["shared", "vendor/model", "openai/gpt-x"]},
        **sections,
    ), {}).config
    return Router(ProviderRegistry(config).providers, config.providers, config.models)


def labels(r: Router, name: str) -> list[str]:
    return [t.label for t in r.resolve(name)]


def test_provider_prefix_then_bare_names_first_in_file_order():
    r = router()
    assert labels(r, "a/m1") == ["a/m1"]
    assert labels(r, "a/unlisted/with/slashes") == ["a/unlisted/with/slashes"]
    assert labels(r, "shared") == ["a/shared"]
    assert labels(r, "openai/gpt-x") == ["openai/gpt-x"]  # a provider named like the prefix wins over c
    assert labels(r, "vendor/model") == ["c/vendor/model"]  # OpenRouter-style id, no provider "vendor"


def test_alias_targets_in_order_and_unknown_model():
    r = router(models=[{"name": "smart", "targets": ["c/shared", "m1"]}])
    assert labels(r, "smart") == ["c/shared", "a/m1"]
    with pytest.raises(ModelNotFoundError) as exc:
        r.resolve("nothing")
    assert exc.value.status == 404 and exc.value.param == "model"
