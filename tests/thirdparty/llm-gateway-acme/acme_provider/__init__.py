"""Acme, an OpenAI-compatible vendor: the whole adapter is its differences from OpenAI."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from plugins.providers.openai import CompatOptions, OpenAICompatibleAdapter


class AcmeAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = CompatOptions
    operations = frozenset({"chat", "embeddings"})
    default_base_url: ClassVar[str | None] = "https://api.acme.example/v1"
    unsupported_params = frozenset({"logit_bias"})
