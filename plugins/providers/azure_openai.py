"""Azure OpenAI: OpenAI's wire format behind deployment URLs and an ``api-key`` header.

Two URL styles (``options.api_style``): ``classic`` (what the contract mandates)
``{base}/openai/deployments/{deployment}/{path}?api-version={api_version}``, and ``v1``
``{base}/openai/v1/{path}`` with the deployment as the body's ``model``. Everything else (content
filter annotations, the ``choices: []`` prompt-filter chunk, ``{"error": {"code": "…"}}`` bodies)
is handled by the OpenAI-compatible base. Decisions: ``docs/providers/azure_openai.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from gateway.adapter import UpstreamRequest
from gateway.operations import Operation
from plugins.providers.openai import PATHS, CompatOptions, OpenAICompatibleAdapter

# The first GA api-version whose streams honour stream_options.include_usage.
STREAM_USAGE_SINCE = "2024-09-01"


class AzureOptions(CompatOptions):
    api_version: str = Field("2024-10-21", min_length=1)
    api_style: Literal["classic", "v1"] = "classic"
    #: requested model name -> deployment name (unmapped names are used as the deployment).
    deployments: dict[str, str] = Field(default_factory=dict)


class AzureOpenAIAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = AzureOptions
    default_base_url: ClassVar[str | None] = None  # the resource root is per customer
    options: AzureOptions

    def __init__(self, name: str, config: Any, options: Any) -> None:
        super().__init__(name, config, options)
        # Lenient: accept the resource root with or without the /openai[/v1] suffix.
        self.base_url = self.base_url.removesuffix("/openai/v1").removesuffix("/openai")
        self.v1 = self.options.api_style == "v1"
        # Responses is served on the v1 surface only (the classic one has no deployment path for it).
        self.native_dialects = frozenset({"openai_responses"}) if self.v1 else frozenset()
        self.stream_usage = self.v1 or self.options.api_version[:10] >= STREAM_USAGE_SINCE

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self.config.key, **self.options.headers}

    def deployment(self, model: str) -> str:
        return self.options.deployments.get(model, model)

    def build_request(self, op: Operation, body: dict[str, Any], model: str) -> UpstreamRequest:
        return super().build_request(op, body, self.deployment(model))

    def url(self, op: Operation, model: str) -> str:
        if self.v1:
            return f"{self.base_url}/openai/v1{PATHS[op.name]}"
        # Quoted: a routed model name may contain "/" and must not reach another path.
        return (f"{self.base_url}/openai/deployments/{quote(model, safe='')}{PATHS[op.name]}"
                f"?api-version={quote(self.options.api_version, safe='')}")

    def native_request(self, path: str, content: bytes, headers: Mapping[str, str]) -> UpstreamRequest:
        return UpstreamRequest("POST", f"{self.base_url}/openai/v1{path}", {**headers, **self.headers}, content=content)

    def models_request(self) -> UpstreamRequest | None:
        return None  # Azure lists base models, not deployments: the configured list is what routes

    def health_request(self) -> UpstreamRequest | None:
        url = (f"{self.base_url}/openai/v1/models" if self.v1
               else f"{self.base_url}/openai/models?api-version={quote(self.options.api_version, safe='')}")
        return UpstreamRequest("GET", url, dict(self.headers))
