"""The endpoints that go through the one generic request path, as data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Operation:
    """One OpenAI endpoint: its name (also the adapter capability), path and body rules."""

    name: str
    path: str
    streamable: bool
    # The body field that must be present, and whether it must be a non-empty list.
    input_field: str
    input_must_be_list: bool = False


CHAT = Operation("chat", "/v1/chat/completions", True, "messages", input_must_be_list=True)
COMPLETIONS = Operation("completions", "/v1/completions", True, "prompt")
EMBEDDINGS = Operation("embeddings", "/v1/embeddings", False, "input")

OPERATIONS: tuple[Operation, ...] = (CHAT, COMPLETIONS, EMBEDDINGS)
