"""Every ``AppKey`` of the core in one place (plugins declare their own next to their code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.redis_client import RedisConnections
    from gateway.reload import Reloader
    from gateway.runtime import Gateway

# The generation this app was configured with: on the served app, the one it started with (the
# current one is ``app[RELOADER].current``); on a reload's own app, that reload's generation.
GATEWAY: web.AppKey[Gateway] = web.AppKey("llm_gateway")
# Present only when gateway.yaml has a ``redis:`` section.
REDIS: web.AppKey[RedisConnections] = web.AppKey("llm_gateway.redis")
# The process's generations of ``Gateway`` (configuration reload): ``app[RELOADER].current``.
RELOADER: web.AppKey[Reloader] = web.AppKey("llm_gateway.reloader")
