"""Every shipped template has an API-format twin that the frontend's conversion reproduces exactly."""

from __future__ import annotations

from harness.client import ComfyClient
from harness.paths import REPO_ROOT
from harness.workflow_format import load_api_twin, load_template, template_names, ui_to_api


def test_every_template_has_an_api_twin_and_nothing_else_is_there():
    twins = sorted(p.stem for p in (REPO_ROOT / "api_workflows").glob("*.json"))
    assert template_names() and twins == template_names()


async def test_api_twins_are_in_sync_with_the_templates(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        info = await c.object_info()
    for name in template_names():
        assert ui_to_api(load_template(name), info) == load_api_twin(name), f"api_workflows/{name}.json is out of date"
