"""The spend writer's bound and retry, and config checks of the governance sections."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.loader import load_data
from plugins.governance.budgets import LocalLedger
from plugins.governance.records import SpendEvent
from plugins.governance.spend_writer import SpendWriter
from plugins.governance.store import open_store
from tests.conftest import make_config


def event(i: int) -> SpendEvent:
    return SpendEvent(f"r{i}", "key_a", "", "p", "m", 10, 5, 0, 0.5, 200, 1.0, time.time(), (("key", "key_a", "all"),))


async def test_a_full_buffer_counts_drops_and_a_store_back_gets_everything_buffered(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/gw.db")
    ledger = LocalLedger()
    writer = SpendWriter(store, ledger, max_events=5, interval_s=1.0, retention_days=30)
    for i in range(8):
        writer.add(event(i))
        ledger.add([ledger.cell(("key", "key_a", "all"))], 0.5)
    assert (writer.waiting, writer.dropped) == (5, 3)
    assert await writer.flush() is False  # the store is not open yet: nothing is lost
    assert writer.waiting == 5 and not writer.healthy
    await store.open()
    try:
        assert await writer.flush() is True
        assert (writer.waiting, writer.written, writer.healthy) == (0, 5, True)
        # The store's counter now holds what was written; this process's unflushed part is what remains.
        assert ledger.baseline == {("key", "key_a", "all"): 2.5}
        assert ledger.pending[("key", "key_a", "all")] == pytest.approx(1.5)
    finally:
        await store.close()


def test_config_errors_name_the_field() -> None:
    cases = [
        ({"pricing": {"nope/gpt-4o-mini": {"input": 1}}}, "pricing.nope/gpt-4o-mini"),
        ({"pricing": {"no-slash": {"input": 1}}}, "pricing"),
        ({"pricing": {"mock/mock-1": {"input": -1}}}, "pricing.mock/mock-1.input"),
        ({"store": {"url": "mysql://u:secret-pw@h/db"}}, "store.url"),
        ({"store": {"flush_interval_s": 5}}, "store.flush_interval_s"),
        ({"admin": {"keys": []}}, "admin.keys"),
        ({"admin": {"keys": ["sha256:abc"]}}, "admin.keys"),
    ]
    for sections, path in cases:
        with pytest.raises(ConfigError) as raised:
            load_data(make_config(**sections), {})
        paths = [where for where, _ in raised.value.problems]
        assert any(p.startswith(path) for p in paths), (sections, raised.value.problems)
        assert "secret-pw" not in str(raised.value.problems)
