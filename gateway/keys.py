"""Every ``AppKey`` of the core in one place (plugins declare their own next to their code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.redis_client import RedisConnections
    from gateway.runtime import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("llm_gateway")
# Present only when gateway.yaml has a ``redis:`` section.
REDIS: web.AppKey[RedisConnections] = web.AppKey("llm_gateway.redis")
