"""The pack as a running ComfyUI 0.3.75 loads and serves it."""

from __future__ import annotations

import re

from harness.client import ComfyClient
from harness.paths import PACK_FOLDER_NAME, REPO_ROOT

PACK_MODULE = f"custom_nodes.{PACK_FOLDER_NAME}"


def _pack_node_names() -> set[str]:
    from restoration_governor.nodes import NODE_CLASS_MAPPINGS

    return set(NODE_CLASS_MAPPINGS)


def test_pack_imports_cleanly(comfy_server):
    log = comfy_server.log_text()
    import_lines = [line for line in log.splitlines() if PACK_FOLDER_NAME in line and "seconds" in line]
    assert import_lines, "ComfyUI's import-times list names the pack"
    assert not any("IMPORT FAILED" in line for line in import_lines), import_lines
    assert "restoration-governor: the queue governor could not be installed" not in log


async def test_nodes_are_registered(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        info = await c.object_info()
    ours = {name for name, spec in info.items() if spec.get("python_module") == PACK_MODULE}
    expected = _pack_node_names()
    assert expected, "the pack defines nodes"
    assert ours == expected


async def test_web_extension_is_listed_and_served(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        listed = (await c.get("/extensions")).ok().body
        ours = [p for p in listed if p.startswith(f"/extensions/{PACK_FOLDER_NAME}/")]
        shipped = sorted(str(p.relative_to(REPO_ROOT / "web")) for p in (REPO_ROOT / "web").rglob("*.js"))
        assert sorted(p.split(f"/extensions/{PACK_FOLDER_NAME}/", 1)[1] for p in ours) == shipped
        for path in ours:
            served = await c.get(path)
            assert served.status == 200
            assert "registerExtension" in served.body or "export" in served.body


async def test_workflow_templates_are_listed_and_served(comfy_server):
    shipped = sorted(p.stem for p in (REPO_ROOT / "example_workflows").glob("*.json"))
    assert shipped, "the pack ships workflow templates"
    async with ComfyClient(comfy_server.url) as c:
        listed = (await c.get("/workflow_templates")).ok().body
        assert sorted(listed.get(PACK_FOLDER_NAME, [])) == shipped
        served = await c.get(f"/api/workflow_templates/{PACK_FOLDER_NAME}/{shipped[0]}.json")
        assert served.status == 200 and isinstance(served.body, dict) and served.body.get("nodes")


async def test_governor_health_answers_on_both_prefixes(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        for prefix in ("", "/api"):
            r = await c.get(f"{prefix}/governor/health")
            assert r.status == 200, (prefix, r.body)
            assert r.body["ok"] is True
            assert re.fullmatch(r"\d+\.\d+\.\d+", r.body["version"])
