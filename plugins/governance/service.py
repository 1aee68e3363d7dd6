"""The governance run-time object: the key index, prices, budget ledgers, the spend writer and
the store, with the background tasks that keep them in step (the change poll, the writer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from plugins.governance.admin_auth import AdminAuth
from plugins.governance.budgets import LocalLedger, RedisLedger
from plugins.governance.pricing import PriceBook
from plugins.governance.settings import AdminConfig, PricingConfig, StoreConfig
from plugins.governance.spend_writer import SpendWriter
from plugins.governance.store import Store, StoreError, open_store
from plugins.governance.virtual_keys import KeyIndex

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.redis_client import RedisConnections

log = logging.getLogger("llm_gateway.governance")
DRAIN_S = 5.0


class Governance:
    def __init__(self, config: GatewayConfig, admin: AdminConfig | None, store: StoreConfig,
                 pricing: PricingConfig | None) -> None:
        self.admin_settings = admin
        self.admin = AdminAuth(admin.keys) if admin is not None else None
        self.reserve_max_tokens = admin.reserve_max_tokens if admin is not None else 4096
        self.store_settings = store
        self.index = KeyIndex()
        self.prices = PriceBook(pricing.root if pricing is not None else {},
                                {p.name: p.type for p in config.providers})
        self.local = LocalLedger()
        self.remote: RedisLedger | None = None
        self.store: Store = open_store(store.url.get_secret_value())
        self.writer = SpendWriter(self.store, self.local, store.queue_max, store.flush_interval_s,
                                  store.retention_days)
        self.store_open = False
        self.polled = asyncio.Event()  # set after each change poll (tests wait on it)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, redis: RedisConnections | None) -> None:
        """Idempotent: ``gateway_startup`` runs again on each configuration reload, and a
        governance carried over a reload is already running."""
        if self._tasks:
            return
        if redis is not None:
            self.remote = RedisLedger(redis.client(), redis.pipeline(), self.local)
        with contextlib.suppress(StoreError):
            await asyncio.wait_for(self.open_and_load(), self.store_settings.poll_interval_s * 4)
        self._tasks = [asyncio.create_task(self.keep_in_step(), name="governance-poll"),
                       asyncio.create_task(self.writer.run(), name="governance-spend-writer")]

    async def open_and_load(self) -> None:
        if not self.store_open:
            await self.store.open()
            self.store_open = True
        await self.poll()

    async def poll(self) -> None:
        keys, teams = await self.store.changes_since(self.index.seq)
        self.index.apply(keys, teams)
        self.index.loaded = True
        self.polled.set()
        self.polled = asyncio.Event()

    async def keep_in_step(self) -> None:
        """Every ``poll_interval_s``: apply key and team changes made by any process. A store that
        is down keeps the last known state serving; the first answer after it returns catches up."""
        failing = False
        while True:
            await asyncio.sleep(self.store_settings.poll_interval_s)
            try:
                await self.open_and_load()
            except (StoreError, TimeoutError) as exc:
                if not failing:
                    log.warning("governance store unavailable (%s); serving the last known keys", exc)
                failing = True
                continue
            if failing:
                log.warning("governance store available again")
            failing = False

    async def stop(self) -> None:
        poller, writer = self._tasks or (None, None)
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if writer is not None:
            self.writer.stop()
            await writer
        if self.remote is not None:
            await self.remote.drain(DRAIN_S)
        if self.store_open:
            await self.writer.drain(DRAIN_S)
        await self.store.close()
        self.store_open = False  # a retired governance (after a reload) reports its store closed
