"""Azure OpenAI flavour of the OpenAI emulator (create with `openai.create_app(state, flavor="azure")`).

Classic routes `/openai/deployments/{dep}/…?api-version=…` (key in `api-key`) and the v1 surface
`/openai/v1/…` (model = deployment name; `api-key` or Bearer). Adds Azure's content-filter annotations,
the `choices: []` prompt-filter first stream chunk and Azure's flat `{code, message}` error bodies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from .base import ApiError, Call, EmulatorState
from .openai import CREATED, OpenAIEmulator
from .replies import Reply
from .server import bearer_token

DEFAULT_DEPLOYMENTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "text-embedding-3-small": "text-embedding-3-small"}
SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": {
    **CHOICE_FILTERS, "jailbreak": {"filtered": False, "detected": False}}}]
AUTH_MESSAGE = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                "valid key for an active subscription and use a correct regional API endpoint for your resource.")
NO_DEPLOYMENT = ("The API deployment for this resource does not exist. If you created the deployment within the "
                 "last 5 minutes, please wait a moment and try again.")
FLAT_STATUSES = {401, 403, 404, 408, 429}  # Azure's own layer answers these as {"error": {code, message}}


class AzureEmulator(OpenAIEmulator):
    vendor = "azure"

    def __init__(self, state: EmulatorState, deployments: Mapping[str, str] | Iterable[str] | None = None) -> None:
        super().__init__(state)
        deployments = DEFAULT_DEPLOYMENTS if deployments is None else deployments
        self.deployments = dict(deployments) if isinstance(deployments, Mapping) else {d: d for d in deployments}

    def routes(self) -> list[tuple[str, str, Any]]:
        rows = []
        for prefix in ("/openai/deployments/{deployment}", "/openai/v1"):
            rows += [("POST", f"{prefix}/chat/completions", self.chat),
                     ("POST", f"{prefix}/completions", self.completions),
                     ("POST", f"{prefix}/embeddings", self.embeddings)]
        return [*rows, ("GET", "/openai/models", self.models), ("GET", "/openai/v1/models", self.models)]

    def authenticate(self, request: web.Request, state: EmulatorState) -> None:
        v1 = request.path.startswith("/openai/v1/")
        key = request.headers.get("api-key") or (bearer_token(request) if v1 else None)
        if key != state.api_key:
            raise ApiError(401, AUTH_MESSAGE)
        if not v1 and "api-version" not in request.query:
            raise ApiError(404, "Resource not found")

    def error_body(self, err: ApiError) -> Any:
        if err.status in FLAT_STATUSES or err.status >= 500:
            return {"error": {"code": err.code or str(err.status), "message": err.message}}
        body = super().error_body(err)
        if err.code == "content_filter":
            body["error"].update(type=None, param="prompt", status=400, innererror={
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {**CHOICE_FILTERS, "violence": {"filtered": True, "severity": "high"}}})
        return body

    def success_headers(self) -> dict[str, str]:
        return {"apim-request-id": f"apim-emu{len(self.state.requests):04d}", "x-ms-region": "East US",
                "x-ratelimit-remaining-requests": "99", "x-ratelimit-remaining-tokens": "99000"}

    def resolve_model(self, call: Call) -> str:
        """The deployment comes from the path (classic) or the body's `model` (v1); answers its model id."""
        deployment = call.request.match_info.get("deployment") or call.body.get("model")
        if not deployment:
            raise ApiError(400, "you must provide a model parameter", param="model")
        if deployment not in self.deployments:
            raise ApiError(404, NO_DEPLOYMENT, code="DeploymentNotFound")
        return self.deployments[deployment]

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        for choice in resp["choices"]:
            choice["content_filter_results"] = CHOICE_FILTERS
        return {**resp, "prompt_filter_results": PROMPT_FILTERS}

    def chunk_choice(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        filters = CHOICE_FILTERS if delta.get("content") else {}
        return {"content_filter_results": filters, **super().chunk_choice(index, delta, finish)}

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        chunks = super().finish_chunks(chunks, base, reply, n, include_usage)
        # Azure's first event: no id/model, no choices, only the prompt's filter verdicts.
        head = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results":
                PROMPT_FILTERS}
        return [head, *chunks]

    async def models(self, call: Call) -> Any:
        data = [{"id": m, "object": "model", "created_at": CREATED, "status": "succeeded",
                 "capabilities": {"chat_completion": "embedding" not in m, "embeddings": "embedding" in m}}
                for m in sorted(set(self.deployments.values()))]
        return {"object": "list", "data": data}
