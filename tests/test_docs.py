"""Every hook is documented in docs/plugins.md with its exact signature (datasette's rule)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gateway import hookspecs

DOC = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()


def specs():
    return [(n, f) for n, f in vars(hookspecs).items() if n.startswith("gateway_") and callable(f)]


def test_every_hookspec_is_documented_with_its_signature():
    assert len(specs()) >= 10
    for name, func in specs():
        sig = inspect.signature(func)
        params = ", ".join(
            f"{p.name}: {p.annotation}" for p in sig.parameters.values()
        )
        expected = f"#### `{name}({params}) -> {sig.return_annotation}`"
        assert expected in DOC, f"docs/plugins.md lacks or misstates: {expected}"


def test_docs_name_no_hook_that_does_not_exist():
    names = {n for n, _ in specs()}
    documented = set(re.findall(r"`(gateway_[a-z_]+)\(", DOC))
    assert documented <= names, documented - names
