"""Browser tests: Debian's headless Chromium, driven by Playwright, against a real ComfyUI server
and its real frontend (never a browser that Playwright downloads).

``comfy_page(locale=...)`` opens the graph editor in a fresh browser profile and returns a
``ComfyPage``; ``gov_http`` is an HTTP client of the same server whose governor settings and queue
are reset before and after each test.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness.client import ComfyClient
from harness.governor import reset_governor
from harness.paths import ARTIFACTS_DIR, PACK_FOLDER_NAME

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
EXTENSION_URL = f"/extensions/{PACK_FOLDER_NAME}/"
# Our traces in console text: the extension's files, our i18n keys, our API routes.
PACK_MARKERS = re.compile(rf"{re.escape(EXTENSION_URL)}|restorationGovernor|/governor/")
SCREENSHOT_DIR = ARTIFACTS_DIR / "browser"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class ConsoleLine:
    type: str
    text: str
    url: str

    def from_pack(self) -> bool:
        return bool(PACK_MARKERS.search(self.text) or PACK_MARKERS.search(self.url))


@dataclass
class ComfyPage:
    page: object  # playwright.async_api.Page
    url: str
    name: str
    console: list[ConsoleLine] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    client_id: str = ""

    def pack_problems(self) -> list[str]:
        """Console errors and warnings, and uncaught exceptions, that come from this pack."""
        lines = [f"{c.type}: {c.text} ({c.url})" for c in self.console
                 if c.type in ("error", "warning") and c.from_pack()]
        return lines + [f"pageerror: {e}" for e in self.page_errors if PACK_MARKERS.search(e)]

    async def screenshot(self, step: str, **kwargs) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{self.name}-{step}.png"
        await self.page.screenshot(path=str(path), **kwargs)
        return path

    async def open_governor_tab(self) -> None:
        if not await self.page.locator(".rg-panel").is_visible():
            await self.page.locator(f".{PACK_FOLDER_NAME}-tab-button").click()
        await self.page.locator(".rg-panel").wait_for(state="visible")

    def row(self, prompt_id: str):
        return self.page.locator(f'.rg-job[data-prompt-id="{prompt_id}"]')

    async def wait_row_state(self, prompt_id: str, state: str, timeout: float = 20_000) -> None:
        await self.page.locator(f'.rg-job[data-prompt-id="{prompt_id}"][data-state="{state}"]').wait_for(
            state="attached", timeout=timeout)

    async def indicator_text(self) -> str | None:
        indicator = self.page.locator(".rg-indicator")
        if not await indicator.is_visible():
            return None
        return " ".join((await indicator.inner_text()).split())

    async def wait_toast(self, text: str, timeout: float = 20_000):
        toast = self.page.locator(".p-toast-message", has_text=text).first
        await toast.wait_for(state="visible", timeout=timeout)
        return toast


@pytest.fixture
async def gov_http(comfy_server) -> AsyncIterator[ComfyClient]:
    """HTTP client of the shared server; governor settings and queue reset around the test."""
    async with ComfyClient(comfy_server.url) as c:
        await reset_governor(c)
        # A returning user: no template browser on first load (it would cover the canvas).
        (await c.post("/settings", {"Comfy.TutorialCompleted": True})).ok()
        yield c
        await reset_governor(c)


@pytest.fixture
async def launch_chromium(tmp_path):
    """``await launch_chromium(locale="en-US")`` -> a Playwright BrowserContext of Debian's Chromium
    with a fresh profile (``--user-data-dir``); closed after the test."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium) or "
                    "`apt-get install chromium`")
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    contexts = []

    async def launch(locale: str = "en-US"):
        profile = tmp_path / f"profile-{len(contexts)}"
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, locale=locale,
            viewport={"width": 1400, "height": 860}, timezone_id="UTC",
        )
        contexts.append(context)
        context.set_default_timeout(20_000)
        return context

    yield launch
    for context in contexts:
        await context.close()
    await playwright.stop()
    for profile in tmp_path.glob("profile-*"):
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def comfy_page(comfy_server, launch_chromium, request):
    """``await comfy_page(locale="en-US", before_load=None)`` -> a loaded graph editor (ComfyPage)."""

    async def open_page(locale: str = "en-US", before_load=None) -> ComfyPage:
        context = await launch_chromium(locale)
        # The "try the new node renderer" banner only distracts in screenshots.
        await context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
        page = context.pages[0] if context.pages else await context.new_page()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
        comfy = ComfyPage(page, comfy_server.url, name)
        page.on("console", lambda m: comfy.console.append(ConsoleLine(m.type, m.text, m.location.get("url", ""))))
        page.on("pageerror", lambda e: comfy.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
        if before_load is not None:
            await before_load(page)
        await page.goto(comfy_server.url + "/")
        await page.wait_for_function(
            "window.comfyAPI?.api?.api?.clientId && window.restorationGovernor?.setupDone === true",
            timeout=90_000)
        comfy.client_id = await page.evaluate("window.comfyAPI.api.api.clientId")
        return comfy

    return open_page
