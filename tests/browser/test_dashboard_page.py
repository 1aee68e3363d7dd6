"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by playwright): sign
in with the keyboard, watch live traffic move the numbers, create a key in the page and use it,
revoke it (then 401); no console errors, no request to any other host, readable on a phone.

``DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the screenshot the README shows.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import BrowserContext, Page, Request, Route, async_playwright, expect

from tests.conftest import StartGateway
from tests.governance.conftest import ADMIN_KEY, chat, completion, governance_config
from tests.services import require_binary

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    executable = require_binary("chromium")
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800})
        try:
            yield context
        finally:
            await context.close()


def watch(page: Page, origin: str) -> tuple[list[str], list[str], Callable[[Route], Awaitable[None]]]:
    """Console errors and page errors; and every request not to ``origin`` (refused, recorded)."""
    errors: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def seen(request: Request) -> None:
        if not (request.url.startswith(origin + "/") or request.url.startswith("data:")):
            foreign.append(request.url)

    async def guard(route: Route) -> None:
        if route.request.url.startswith(origin + "/"):
            await route.continue_()
        else:
            await route.abort()

    page.on("request", seen)
    return errors, foreign, guard


async def text_at_least(page: Page, selector: str, value: int) -> None:
    # The page's CSP forbids eval, so no wait_for_function: read the text until it is there.
    deadline = asyncio.get_running_loop().time() + TIMEOUT_MS / 1000
    while int(await page.text_content(selector) or 0) < value:
        assert asyncio.get_running_loop().time() < deadline, f"{selector} never reached {value}"
        await page.wait_for_timeout(200)


async def traffic(http: aiohttp.ClientSession, url: str, key: str, n: int) -> None:
    for i in range(n):
        body: dict[str, Any] = {**chat(f"request number {i} of the browser test"), "stream": i % 2 == 0}
        async with http.post(url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 200
            await resp.read()


async def test_the_dashboard_live_in_a_browser(gateway: StartGateway, tmp_path: Path, browser: BrowserContext,
                                               http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    page = await browser.new_page()
    errors, foreign, guard = watch(page, gw.url)
    await page.route("**/*", guard)
    await page.goto(gw.url + "/ui")
    assert await page.title() == "llm-gateway dashboard"
    assert ADMIN_KEY not in await page.content()

    # Keyboard only: the key field has the focus, Enter signs in.
    await page.keyboard.type(ADMIN_KEY)
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_contain_text("Live", timeout=TIMEOUT_MS)
    assert await page.text_content("#requests-total") == "0"
    assert await page.evaluate("sessionStorage.getItem('llm-gateway-admin-key')") == ADMIN_KEY

    # Create a key in the page; its secret is shown once; it works.
    await page.get_by_label("New key name").fill("browser")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-key-secret")).to_contain_text(re.compile(r"\S{20}"), timeout=TIMEOUT_MS)
    secret = await page.text_content("#new-key-secret")
    assert secret and (await completion(http, gw, secret))[0] == 200

    await traffic(http, gw.url, secret, 20)
    await text_at_least(page, "#requests-last-min", 21)
    row = page.locator("#providers tbody tr", has_text="mock")
    await row.wait_for(timeout=TIMEOUT_MS)
    cells = await row.locator("td").all_text_contents()
    assert cells[0] == "healthy" or cells[0] == "unknown"
    assert cells[1] == "closed" and cells[4] == "21" and cells[5] == "0.0 %"
    for percentiles in cells[2:4]:  # latency and TTFT p50 / p95 are there
        assert re.fullmatch(r"[\d.]+ / [\d.]+", percentiles), percentiles
    await expect(page.locator("#chart-requests")).to_have_attribute("aria-label", re.compile(r"latest [\d.]+/s"))
    await page.locator("#top-keys tbody tr", has_text="key_").first.wait_for(timeout=TIMEOUT_MS)

    await page.get_by_role("button", name="I have copied it").click()  # the secret leaves the page
    assert secret not in await page.content()
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    target = os.environ.get("DASHBOARD_SCREENSHOT")
    if target:
        shutil.copy(tmp_path / "dashboard.png", target)
    assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Revoke it in the page: the gateway refuses it from then on.
    await page.get_by_role("button", name="Revoke key browser").click()
    await page.locator("#keys tbody tr", has_text="revoked").wait_for(timeout=TIMEOUT_MS)
    assert (await completion(http, gw, secret))[0] == 401

    # A phone's width: nothing wider than the screen but the tables' own scroll boxes.
    await page.set_viewport_size({"width": 390, "height": 844})
    await asyncio.sleep(0)  # layout happens on the next frame; scrollWidth forces it
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    await page.close()
    assert errors == [] and foreign == []
