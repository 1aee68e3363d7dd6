"""The endpoints that go through the one generic request path, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.dialect import Dialect


@dataclass(frozen=True, slots=True)
class Operation:
    """One OpenAI endpoint: its name (also the adapter capability), path and body rules."""

    name: str
    path: str
    streamable: bool
    # The body field that must be present, and whether it must be a non-empty list.
    input_field: str
    input_must_be_list: bool = False
    # An inbound dialect's endpoint: its wire format in and out (``gateway.dialect``), and the
    # canonical operation its requests become (the adapter capability they need).
    dialect: Dialect | None = None
    upstream: Operation | None = None
    # The operation adapters see: this one, or the one a dialect's requests become. Set once, a
    # plain attribute: the request path reads it several times per request.
    canonical: Operation = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", self.upstream or self)


CHAT = Operation("chat", "/v1/chat/completions", True, "messages", input_must_be_list=True)
COMPLETIONS = Operation("completions", "/v1/completions", True, "prompt")
EMBEDDINGS = Operation("embeddings", "/v1/embeddings", False, "input")

OPERATIONS: tuple[Operation, ...] = (CHAT, COMPLETIONS, EMBEDDINGS)
