"""Embeddings: OpenAI ``/v1/embeddings`` ↔ Cohere ``POST /v2/embed``.

Cohere v3+ models require an ``input_type``; it comes from the request extension field
``input_type`` or else the provider option ``embed_input_type``. ``encoding_format: base64`` asks
Cohere for its ``base64`` type, which is the float32 bytes of each vector base64-encoded, the
same little-endian layout OpenAI returns, so it is relayed without decoding.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.errors import InvalidRequestError
from plugins.providers.cohere.common import usage_of

log = logging.getLogger("llm_gateway.providers.cohere")

HANDLED = frozenset({"model", "input", "encoding_format", "dimensions", "input_type", "truncate"})


def input_texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        # Token-id arrays are OpenAI-tokenizer specific; Cohere embeds text only.
        raise InvalidRequestError("Cohere embeddings take 'input' as a string or a non-empty array of strings.",
                                  param="input")
    return texts


def build_embed(body: dict[str, Any], model: str, *, input_type: str, provider: str = "cohere") -> dict[str, Any]:
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequestError("encoding_format must be 'float' or 'base64'.", param="encoding_format")
    out: dict[str, Any] = {"model": model, "texts": input_texts(body.get("input")),
                           "input_type": body.get("input_type") or input_type, "embedding_types": [fmt]}
    if body.get("dimensions") is not None:
        out["output_dimension"] = body["dimensions"]
    if body.get("truncate") is not None:  # Cohere extension: NONE | START | END
        out["truncate"] = body["truncate"]
    for key in body.keys() - HANDLED:
        log.debug("provider %s: dropping embeddings parameter %r (no Cohere equivalent)", provider, key)
    return out


def vectors_of(embeddings: Any) -> list[Any]:
    """The vectors in the one type that was requested (``embeddings_by_type``), or the legacy
    ``embeddings_floats`` list."""
    if isinstance(embeddings, list):
        return embeddings
    for kind in ("base64", "float"):
        if embeddings.get(kind) is not None:
            return embeddings[kind]
    raise ValueError("embed response has neither float nor base64 embeddings")


def parse_embed(payload: Any, model: str, *, usage_source: str = "billed_units") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError("response is not a JSON object")
    data = [{"object": "embedding", "index": i, "embedding": vec}
            for i, vec in enumerate(vectors_of(payload["embeddings"]))]
    usage = usage_of(payload.get("meta"), usage_source)
    prompt = usage["prompt_tokens"] if usage else 0
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
