"""Browser tests: Debian's headless Chromium, driven by Playwright, against a real ComfyUI server
and its real frontend (never a browser that Playwright downloads).

``comfy_page(locale=...)`` opens the graph editor in a fresh browser profile and returns a
``ComfyPage``; ``gov_http`` is an HTTP client of the same server whose governor settings and queue
are reset before and after each test.

Every test that opens the graph editor (uses ``comfy_page``) runs twice: on the core's own frontend
(1.32) and on the newest frontend that ``scripts/devenv.sh setup`` installs into
``.venv/frontend-<version>/`` (served by the same core with ``--front-end-root``). ``frontend`` says
which one a test got; tests that do not open the editor run once, on the core's own frontend.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import server_logs
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer
from harness.governor import reset_governor
from harness.paths import ARTIFACTS_DIR, PACK_FOLDER_NAME, REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
EXTENSION_URL = f"/extensions/{PACK_FOLDER_NAME}/"
# Our traces in console text: the extension's files, our i18n keys, our API routes.
PACK_MARKERS = re.compile(rf"{re.escape(EXTENSION_URL)}|restorationGovernor|/governor/")
SCREENSHOT_DIR = ARTIFACTS_DIR / "browser"
# The same things in both frontends: 1.32 (PrimeVue) and 1.58 (its own toast and sidebar components).
TOAST_SELECTOR = '.p-toast-message, [data-testid="toast"]'
TAB_BUTTON_SELECTOR = f'.{PACK_FOLDER_NAME}-tab-button, [data-testid="{PACK_FOLDER_NAME}-tab-button"]'
# Counts the execution_error events that reach the frontend's listeners, per prompt: registered
# last, so an event the pack holds back is not counted and one handed on twice is counted twice.
COUNT_ERRORS_JS = """() => {
  window.__rgErrors = {};
  window.comfyAPI.api.api.addEventListener("execution_error", (e) => {
    const id = e.detail && e.detail.prompt_id;
    window.__rgErrors[id] = (window.__rgErrors[id] || 0) + 1;
  });
}"""
# Loads an API-format prompt into the graph editor and queues it the way the Run button does;
# returns the prompt id the server gave it.
QUEUE_FROM_EDITOR_JS = """async (prompt) => {
  const app = window.comfyAPI.app.app;
  const api = window.comfyAPI.api.api;
  const original = api.queuePrompt;
  const ids = [];
  api.queuePrompt = async function (...args) {
    const answer = await original.apply(this, args);
    ids.push(answer && answer.prompt_id);
    return answer;
  };
  try {
    await app.loadApiJson(prompt, "rg-test.json");
    await app.queuePrompt(0, 1);
  } finally {
    api.queuePrompt = original;
  }
  return ids[0] || null;
}"""
CORE_FRONTEND = "core"  # the frontend the core pins (1.32.9 for ComfyUI 0.3.75), from the venv
NEW_FRONTEND_GLOB = "frontend-*"  # .venv/frontend-<version>/, installed by scripts/devenv.sh setup


def _version_key(folder: Path) -> tuple[int, ...]:
    parts = folder.name.removeprefix("frontend-").split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def new_frontend_root() -> Path | None:
    """``static/`` of the newest frontend under ``.venv/frontend-<version>/``, or None."""
    folders = sorted((REPO_ROOT / ".venv").glob(NEW_FRONTEND_GLOB), key=_version_key)
    for folder in reversed(folders):
        static = folder / "comfyui_frontend_package" / "static"
        if (static / "index.html").exists():
            return static
    return None


def _frontend_ids() -> tuple[str, str]:
    try:
        core = f"frontend-{importlib.metadata.version('comfyui-frontend-package')}"
    except importlib.metadata.PackageNotFoundError:
        core = "frontend-core"
    root = new_frontend_root()
    return core, root.parents[1].name if root else "frontend-new"


def pytest_generate_tests(metafunc):
    if "comfy_page" in metafunc.fixturenames:
        core, new = _frontend_ids()
        metafunc.parametrize("frontend", [CORE_FRONTEND, new], ids=[core, new], indirect=True, scope="session")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def frontend(request) -> str:
    """``"core"`` (the core's own frontend) or the newer one's folder name (``"frontend-1.58.1"``)."""
    return getattr(request, "param", CORE_FRONTEND)


@pytest.fixture(scope="session")
def _new_frontend_server(tmp_path_factory: pytest.TempPathFactory):
    """A second server of the same core serving the newer frontend; started on first use."""
    servers: list[ComfyServer] = []

    def get() -> ComfyServer:
        if not servers:
            root = new_frontend_root()
            if root is None:
                pytest.fail(f"no newer frontend under {REPO_ROOT / '.venv' / NEW_FRONTEND_GLOB}: run "
                            "`scripts/devenv.sh setup` (or `make test`), which installs it")
            base = tmp_path_factory.mktemp("comfy-new-frontend")
            servers.append(ComfyServer(base, name="new-frontend", extra_args=["--front-end-root", str(root)],
                                       env={"GOVERNOR_STATE_DIR": str(base / "governor-state")}))
        server = servers[0]
        if not server.alive():
            server.start()
        return server

    yield get
    for server in servers:
        server.stop()


@pytest.fixture
def comfy_server(comfy_server, frontend, request):
    """The server a test talks to: the session's shared one (the root conftest's ``comfy_server``),
    or for the newer frontend a second server of the same core that serves it."""
    if frontend == CORE_FRONTEND:
        return comfy_server
    server = request.getfixturevalue("_new_frontend_server")()
    server_logs.remember(request, server, "ComfyUI", 200)
    return server


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
    frontend: str = "core"
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

    @property
    def new_frontend(self) -> bool:
        return self.frontend != CORE_FRONTEND

    def tab_button(self):
        return self.page.locator(TAB_BUTTON_SELECTOR)

    async def open_governor_tab(self) -> None:
        if not await self.page.locator(".rg-panel").is_visible():
            await self.tab_button().click()
        await self.page.locator(".rg-panel").wait_for(state="visible")

    def indicator(self):
        """The live line: the floating one (1.32) or the action bar button (frontends with one)."""
        return self.page.locator(".rg-actionbar" if self.new_frontend else ".rg-indicator")

    async def count_errors(self) -> None:
        await self.page.evaluate(COUNT_ERRORS_JS)

    async def errors_seen(self, prompt_id: str) -> int:
        return await self.page.evaluate("(id) => (window.__rgErrors || {})[id] || 0", prompt_id)

    async def queue_from_editor(self, prompt: dict) -> str:
        prompt_id = await self.page.evaluate(QUEUE_FROM_EDITOR_JS, prompt)
        assert prompt_id, "the graph editor did not queue the prompt"
        return prompt_id

    def error_report(self, message: str, node_type: str):
        """The frontend's own report of a failed run: 1.32's error dialog (it quotes the message);
        1.58's error overlay, which names the node ("<node type> failed"), or its dialog when the
        issues tab is turned off."""
        if not self.new_frontend:
            return self.page.locator(".p-dialog", has_text=message)
        return self.page.locator('[data-testid="error-overlay"], .p-dialog', has_text=f"{node_type} failed")

    def row(self, prompt_id: str):
        return self.page.locator(f'.rg-job[data-prompt-id="{prompt_id}"]')

    async def wait_row_state(self, prompt_id: str, state: str, timeout: float = 20_000) -> None:
        await self.page.locator(f'.rg-job[data-prompt-id="{prompt_id}"][data-state="{state}"]').wait_for(
            state="attached", timeout=timeout)

    async def indicator_text(self) -> str | None:
        """The live line's text and notes (the action bar button keeps its notes in its tooltip)."""
        indicator = self.indicator()
        if not await indicator.is_visible():
            return None
        text = await indicator.inner_text()
        if self.new_frontend:
            text += " " + (await indicator.get_attribute("aria-label") or "")
        return " ".join(text.split())

    async def wait_toast(self, text: str, timeout: float = 20_000):
        toast = self.page.locator(TOAST_SELECTOR, has_text=text).first
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
async def comfy_page(comfy_server, frontend, launch_chromium, request):
    """``await comfy_page(locale="en-US", before_load=None)`` -> a loaded graph editor (ComfyPage)."""

    async def open_page(locale: str = "en-US", before_load=None) -> ComfyPage:
        context = await launch_chromium(locale)
        # The "try the new node renderer" banner only distracts in screenshots.
        await context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
        page = context.pages[0] if context.pages else await context.new_page()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
        comfy = ComfyPage(page, comfy_server.url, name, frontend)
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
