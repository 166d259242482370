"""Browser tests: a real Keyplane server on loopback (SQLite) and Debian's Chromium driven by
Playwright. Skipped, with the reason, where Chromium is missing, except under CI=true."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import make_settings
from tests.live import LiveServer as LiveServer  # re-exported for the browser tests
from tests.live import running_server
from tests.users.helpers import Actor

CHROMIUM = os.environ.get("KEYPLANE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(os.environ.get("KEYPLANE_SCREENSHOT_DIR", "build/screenshots"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def live_server(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[LiveServer]:
    """The console is tested against a real server on SQLite."""
    database = tmp_path / "keyplane.db"
    shutil.copyfile(sqlite_template, database)
    settings = make_settings(f"sqlite:///{database}", tmp_path, last_used_flush_seconds=0.2)
    async with running_server(settings) as server:
        yield server


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (Debian package: chromium)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message}; CI=true: browser tests must run")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser, live_server: LiveServer) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(10_000)
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


async def log_in(page: Page, actor: Actor, org: str = "acme") -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(actor.email)
    await page.get_by_label("Organization").fill(org)
    await page.get_by_label("Password").fill(actor.password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/my/api-keys")


async def screenshot(page: Page, name: str) -> None:
    await asyncio.to_thread(SCREENSHOT_DIR.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)
