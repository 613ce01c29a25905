"""A pack exception reaches ComfyUI's history and events under its short name, with its message whole."""

from __future__ import annotations

import numpy as np
from harness.client import ComfyClient, history_outcome
from harness.graphs import Graph
from PIL import Image


async def test_a_pack_exception_is_reported_as_its_short_type_name(comfy_server):
    broken = comfy_server.models_dir / "ddcolor" / "error_names_case.pth"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip, cut off
    photo = comfy_server.input_dir / "error_names_case.png"
    Image.fromarray(np.full((48, 64), 128, np.uint8)).convert("RGB").save(photo)
    g = Graph()
    image = g.node("LoadImage", image=photo.name)
    model = g.node("DDColorModelLoader", model_name=broken.name)
    colorized = g.node("DDColorColorize", image=image.out(0), model=model.out(0), preset="custom", input_size=64,
                       ab_upsample="nearest", keep_aspect=False, clamp_ab=False, precision="auto")
    g.node("PreviewImage", images=colorized.out(0))
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(g.prompt(), timeout=120)
        job = (await c.get(f"/governor/jobs/{entry['prompt'][1]}")).ok().body
    assert history_outcome(entry) == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors[0]["exception_type"] == "DDColorLoadError"
    assert errors[0]["exception_message"].startswith("error_names_case.pth is truncated")
    assert "delete it" in errors[0]["exception_message"]  # the remedy is never cut away
    recorded = [e.get("exception_type") for e in job.get("errors", [])]
    assert recorded == ["DDColorLoadError"], recorded
