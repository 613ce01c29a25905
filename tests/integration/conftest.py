"""Integration tests talk to a real ComfyUI server over HTTP and WebSocket."""

import pytest

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def gov_client(comfy_server):
    """A client of the shared server whose governor settings and queue are reset before and after."""
    from harness.client import ComfyClient
    from harness.governor import reset_governor

    async with ComfyClient(comfy_server.url) as c:
        await reset_governor(c)
        yield c
        await reset_governor(c)
