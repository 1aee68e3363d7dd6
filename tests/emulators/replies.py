"""Deterministic replies: text, tool calls and token counts derived from the request.

Formulas (documented in README.md so tests can assert exact numbers):
- tokens of a text = number of whitespace-separated words;
- prompt tokens = words of every text in the request (system, messages, text parts, tool results);
- reply text = "Hello from <vendor>! You said: <last user text>" ("… Tool said: <result>" after a tool result),
  or `state.reply_text`; cut at the first stop sequence, then to `max_tokens` words;
- completion tokens = words of the (cut) reply text, or of the tool-call arguments JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import EmulatorState

_PIECE = re.compile(r"\S+\s*")
Finish = Literal["stop", "length", "tool", "stop_sequence"]


def words(text: str) -> int:
    return len(text.split())


def pieces(text: str) -> list[str]:
    """How a text is cut into stream deltas: one word plus its trailing whitespace per delta."""
    return _PIECE.findall(text)


def text_of(value: Any) -> str:
    """Concatenated text of a message content in any vendor's shape (string, parts, blocks, documents)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(t for t in (text_of(v) for v in value) if t)
    if isinstance(value, dict):
        return " ".join(t for k in ("text", "content", "document", "data") if (t := text_of(value.get(k))))
    return ""


@dataclass
class Turn:
    role: Literal["system", "user", "assistant", "tool"]
    text: str


@dataclass
class Prompt:
    turns: list[Turn]

    @property
    def tokens(self) -> int:
        return sum(words(t.text) for t in self.turns)

    @property
    def last_user_text(self) -> str:
        return next((t.text for t in reversed(self.turns) if t.role == "user"), "")

    @property
    def ends_with_user(self) -> bool:
        return bool(self.turns) and self.turns[-1].role == "user"

    @property
    def tool_result(self) -> str | None:
        return self.turns[-1].text if self.turns and self.turns[-1].role == "tool" else None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    fragments: list[str]  # ≥2 pieces whose concatenation is `arguments`

    @property
    def input(self) -> dict[str, Any]:
        return json.loads(self.arguments)

    @property
    def plan(self) -> str:
        """Preamble some vendors send before a call (Anthropic text block, Cohere tool_plan)."""
        return f"I will call {self.name}."


@dataclass
class Reply:
    text: str
    finish: Finish
    prompt_tokens: int
    completion_tokens: int
    tool_call: ToolCall | None = None
    stop_sequence: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deltas(self) -> list[str]:
        return pieces(self.text)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def schema_arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments satisfying a JSON schema's (required, else all) properties, built from the user's text."""
    props = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for key in schema.get("required") or list(props):
        spec = props.get(key) or {}
        kind = spec.get("type")
        if spec.get("enum"):
            args[key] = spec["enum"][0]
        elif kind in ("integer", "number"):
            args[key] = words(text)
        else:
            args[key] = {"boolean": True, "array": [text], "object": {}}.get(kind, text)
    return args


def split_fragments(text: str) -> list[str]:
    cut = max(1, len(text) // 3)
    pieces = [text[:cut], text[cut : 2 * cut], text[2 * cut :]]
    return [p for p in pieces if p] if len(text) > 2 else [text[:1], text[1:]]


def plan_reply(state: EmulatorState, vendor: str, prompt: Prompt, *,
               tools: list[tuple[str, dict[str, Any]]] | None = None,
               tool_choice: str | None = None, max_tokens: int | None = None,
               stop: list[str] | None = None, id_prefix: str = "call_") -> Reply:
    """`tool_choice`: None/"auto"/"required", "none" (never call), or a tool name to force."""
    if tools and prompt.ends_with_user and tool_choice != "none":
        by_name = dict(tools)
        override = state.tool_reply
        name = (override and override.name) or (tool_choice if tool_choice in by_name else tools[0][0])
        args = override.arguments if override and override.arguments is not None else None
        if args is None:
            args = schema_arguments(by_name.get(name, {}), prompt.last_user_text)
        arguments = json.dumps(args)
        call = ToolCall(f"{id_prefix}{len(state.requests):04d}", name, arguments, split_fragments(arguments))
        return Reply("", "tool", prompt.tokens, words(arguments), tool_call=call)
    if state.reply_text is not None:
        text = state.reply_text
    elif prompt.tool_result is not None:
        text = f"Hello from {vendor}! Tool said: {prompt.tool_result}"
    else:
        text = f"Hello from {vendor}! You said: {prompt.last_user_text}"
    finish: Finish = "stop"
    hit = min(((text.find(s), s) for s in stop or [] if s and s in text), default=None)
    if hit is not None:
        text, finish = text[: hit[0]], "stop_sequence"
    cut = pieces(text)
    if max_tokens is not None and len(cut) > max_tokens:
        text, finish = "".join(cut[:max_tokens]).rstrip(), "length"
    return Reply(text, finish, prompt.tokens, words(text), stop_sequence=hit[1] if hit else None)


def embedding(text: str, dims: int) -> list[float]:
    """Deterministic unit vector from the text's SHA-256 (values exactly representable in float32)."""
    raw = hashlib.sha256(text.encode()).digest() * (dims // 32 + 1)
    vec = [(b - 127.5) / 128 for b in raw[:dims]]
    norm = sum(v * v for v in vec) ** 0.5
    return [float(struct.unpack("<f", struct.pack("<f", v / norm))[0]) for v in vec]


def pack_floats(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


def unpack_floats(text: str) -> list[float]:
    """Inverse of pack_floats (OpenAI and Cohere base64 embeddings are little-endian float32)."""
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
