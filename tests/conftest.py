"""Shared pytest set-up.

* ``restoration_governor`` is registered as an alias of the checkout's root package *without*
  running its ``__init__``, so unit tests import plain modules
  (``restoration_governor.governor.scheduler``) with no ComfyUI and no torch.
* ``comfy_server`` is one real ComfyUI server shared by the whole session; ``comfy_server_factory``
  starts fresh ones for tests that restart or kill a server. Logs of every server a failing test
  used are attached to its report.
"""

from __future__ import annotations

import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import server_logs
from harness.comfy_server import ComfyServer
from harness.paths import ARTIFACTS_DIR, COMFYUI_DIR, REPO_ROOT

PACKAGE_ALIAS = "restoration_governor"


def _register_package_alias() -> None:
    if PACKAGE_ALIAS in sys.modules:
        return
    pkg = types.ModuleType(PACKAGE_ALIAS)
    pkg.__path__ = [str(REPO_ROOT)]  # submodules resolve inside the checkout
    pkg.__file__ = str(REPO_ROOT / "__init__.py")
    sys.modules[PACKAGE_ALIAS] = pkg


_register_package_alias()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        report.sections.extend(server_logs.sections(item))


def _require_comfyui() -> None:
    if not (COMFYUI_DIR / "main.py").exists():
        pytest.fail(f"ComfyUI is not installed at {COMFYUI_DIR}: run `make test` (it sets the environment up)")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def _shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    _require_comfyui()
    base = tmp_path_factory.mktemp("comfy-shared")
    server = ComfyServer(base, name="shared", env={"GOVERNOR_STATE_DIR": str(base / "governor-state")})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def comfy_server(_shared_server: ComfyServer, request: pytest.FixtureRequest) -> ComfyServer:
    """The session's shared server (restarted if an earlier test killed it)."""
    if not _shared_server.alive():
        _shared_server.start()
    server_logs.remember(request, _shared_server, "ComfyUI", 200)
    return _shared_server


@pytest.fixture
def comfy_server_factory(tmp_path: Path, request: pytest.FixtureRequest):
    """``make(name, **ComfyServer kwargs)`` -> a started (unless ``start=False``) private server."""
    _require_comfyui()
    started: list[ComfyServer] = []

    def make(name: str = "fresh", *, start: bool = True, base_dir: Path | None = None, **kwargs) -> ComfyServer:
        server = ComfyServer(base_dir or tmp_path / name, name=name, **kwargs)
        started.append(server)
        server_logs.remember(request, server, "ComfyUI", 200)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


def pytest_sessionfinish(session, exitstatus):
    # Keep the artifacts folder tidy when it only holds an empty run.
    if ARTIFACTS_DIR.exists() and not any(ARTIFACTS_DIR.iterdir()):
        shutil.rmtree(ARTIFACTS_DIR, ignore_errors=True)
