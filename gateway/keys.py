"""Every ``AppKey`` of the core in one place (plugins declare their own next to their code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.runtime import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("llm_gateway")
