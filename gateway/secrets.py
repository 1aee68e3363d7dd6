"""Masking secrets in text: the secret literals from the config, the values of credential headers,
and the shapes of common vendor keys.

The core scrubs every error message it builds from vendor text (a vendor's 401 may echo the key it
was sent) before the message reaches a client, a hook, ``/health/providers`` or a log; the
``redaction`` plugin applies the same ``Scrubber`` to every log record. Nothing here runs on a
successful request.

A masked value keeps a known key prefix and, when enough stays hidden, its last four characters
(``sk-proj-…Ab12``), which is what one needs to tell keys apart in a log; a short value becomes
``[redacted]``. Masking is idempotent: a masked value is never masked again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.errors import GatewayError

REDACTED = "[redacted]"
ELLIPSIS = "\u2026"
# Longest first: the mask keeps the most specific prefix.
KEY_PREFIXES = ("sk-ant-", "sk-proj-", "sk-or-", "sk-", "xai-", "pplx-")
# Literals shorter than this are left to the header and key patterns: masking every occurrence of
# a four-letter string would mangle the logs and hide nothing.
MIN_LITERAL_LEN = 6
# The last four characters are shown only when at least this many more stay hidden.
MIN_HIDDEN_FOR_TAIL = 12

# What ``mask`` returns (a header value pattern may have cut off the closing bracket).
_MASKED = re.compile(rf"(?:{'|'.join(KEY_PREFIXES)})?(?:{ELLIPSIS}.{{0,4}}|\[redacted\]?)")
_VALUE = r"[^\s\"',;()\[\]{}<>]+"
# Lower-case substrings one of the patterns below needs; text without any skips the regex.
PATTERN_MARKERS = ("authoriz", "api", "bearer", "sk-", "xai-", "pplx-")
MAX_PROBED_LITERALS = 32
_PATTERNS = re.compile("|".join((
    # "Authorization: Bearer x", "'x-api-key': 'x'", '"api-key": "x"', "OPENAI_API_KEY=x"
    r"(?P<hname>(?<![\w-])[\w-]*(?:authorization|api[-_]?key))(?P<hsep>[\"']?\s*[:=]\s*[\"']?)"
    rf"(?P<hscheme>(?:bearer|basic|token)\s+)?(?P<hvalue>[\w-]*\[redacted\]|{_VALUE})",
    r"(?P<bscheme>\bbearer\s+)(?P<bvalue>[A-Za-z0-9._~+/-]{8,}=*)",
    r"(?<![A-Za-z0-9])(?P<key>(?:sk-ant-|sk-proj-|sk-or-|sk-|xai-|pplx-)[A-Za-z0-9_-]{20,})",
)), re.IGNORECASE)


def mask(value: str, keep_tail: bool = True) -> str:
    """``sk-proj-…Ab12`` for a long value, ``[redacted]`` (after any known prefix) for a short one
    or when ``keep_tail`` is off (text a client will see: not even four characters of our key)."""
    if _MASKED.fullmatch(value):
        return value
    prefix = next((p for p in KEY_PREFIXES if value.startswith(p)), "")
    rest = value[len(prefix):]
    if keep_tail and len(rest) >= MIN_HIDDEN_FOR_TAIL + 4:
        return f"{prefix}{ELLIPSIS}{rest[-4:]}"
    return prefix + REDACTED


def literal_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words`` (longest first), built as a trie so its cost per
    character does not grow with the number of secrets."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word
    return _trie_regex(root)


def _trie_regex(node: dict[str, Any]) -> str:
    alts = []
    for ch in sorted(k for k in node if k):
        run, child = ch, node[ch]
        while len(child) == 1 and "" not in child:  # a chain without branches: one literal run
            (nxt, child), = child.items()
            run += nxt
        alts.append(re.escape(run) + (_trie_regex(child) if set(child) != {""} else ""))
    body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return f"(?:{body})?" if "" in node else body


class Scrubber:
    """Masks secrets in text. Immutable and thread-safe; build one per config.

    Cheap substring tests run first, so text with nothing secret-looking in it costs a few
    microseconds and is returned as the same object.
    """

    def __init__(self, secrets: Iterable[str] = (), *, keep_tail: bool = True) -> None:
        self.keep_tail = keep_tail
        self.literals = tuple(sorted({s for s in secrets if len(s) >= MIN_LITERAL_LEN}))
        self._literal_re = re.compile(literal_pattern(self.literals)) if self.literals else None
        # A few literals are cheapest to look for one by one; many, through the one trie regex.
        self._probe = self.literals if len(self.literals) <= MAX_PROBED_LITERALS else None

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked (the same object when there was nothing to mask)."""
        if self._literal_re is not None and (self._probe is None or any(s in text for s in self._probe)):
            text = self._literal_re.sub(self._mask_match, text)
        lower = text.lower()
        if any(marker in lower for marker in PATTERN_MARKERS):
            text = _PATTERNS.sub(self._replace, text)
        return text

    def scrub_error(self, error: GatewayError) -> GatewayError:
        """Mask secrets in an error's message (which clients, hooks and logs see), in place."""
        clean = self.scrub(error.message)
        if clean is not error.message:
            error.message = clean
            error.args = (clean, *error.args[1:])
        return error


    def _mask_match(self, m: re.Match[str]) -> str:
        return mask(m.group(0), self.keep_tail)

    def _replace(self, m: re.Match[str]) -> str:
        group = m.lastgroup
        if group == "hvalue":
            value = mask(m.group("hvalue"), self.keep_tail)
            return m.group("hname") + m.group("hsep") + (m.group("hscheme") or "") + value
        if group == "bvalue":
            return m.group("bscheme") + mask(m.group("bvalue"), self.keep_tail)
        return mask(m.group(0), self.keep_tail)
