"""The DDColor nodes and the person / building templates on a real ComfyUI server.

The templates reference the official checkpoints, which cannot be downloaded here: the test puts
a random-weight checkpoint with the real (tiny) key layout under the file names the templates
use, and runs the templates unchanged (person at 512, building at 1024).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness.client import ComfyClient, history_outcome
from harness.ddcolor_checkpoints import install_checkpoint
from harness.graphs import Graph
from harness.workflow_format import load_api_twin
from PIL import Image

TEMPLATES = ("DDColor Person Restore", "DDColor Building Restore")




def _referenced(api: dict, class_type: str, field: str) -> str:
    return next(node["inputs"][field] for node in api.values() if node["class_type"] == class_type)


def _gray_photo(path: Path, width: int = 200, height: int = 136) -> None:
    y, x = np.mgrid[0:height, 0:width]
    gray = 128 + 70 * np.sin(x / 9.0) * np.cos(y / 13.0) + 40 * ((x // 25 + y // 25) % 2)
    Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).convert("RGB").save(path)


async def test_nodes_are_registered_as_other_workflows_expect(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        loader = await c.object_info("DDColorModelLoader")
        colorize = await c.object_info("DDColorColorize")
    loader, colorize = loader["DDColorModelLoader"], colorize["DDColorColorize"]
    assert loader["display_name"] == "DDColor Model Loader" and loader["output"] == ["DDCOLOR_MODEL"]
    assert {"ddcolor_paper_tiny.pth", "ddcolor_modelscope.pth", "ddcolor_artistic.pth",
            "ddcolor_paper.pth"} <= set(loader["input"]["required"]["model_name"][0])
    assert colorize["display_name"] == "DDColor Colorize" and colorize["output"] == ["IMAGE"]
    required = colorize["input"]["required"]
    assert {name: spec[0] for name, spec in required.items() if not isinstance(spec[0], list)} == {
        "image": "IMAGE", "model": "DDCOLOR_MODEL", "input_size": "INT", "keep_aspect": "BOOLEAN",
        "clamp_ab": "BOOLEAN"}
    assert required["preset"][0] == ["person", "building", "custom"]
    assert required["ab_upsample"][0] == ["nearest", "bilinear", "guided"]
    assert required["precision"][0] == ["auto", "fp32", "bf16"]
    assert colorize["input"]["optional"]["face_mask"][0] == "MASK"
    assert loader["category"].startswith("restoration-governor/")




@pytest.mark.parametrize("name", TEMPLATES)
async def test_template_runs_end_to_end_and_writes_a_colour_image(comfy_server, name):
    api = load_api_twin(name)
    checkpoint = _referenced(api, "DDColorModelLoader", "model_name")
    install_checkpoint(comfy_server.models_dir / "ddcolor" / checkpoint, "convnext-t")
    image_name = _referenced(api, "RestorationLoadImage", "image")
    photo = comfy_server.input_dir / image_name
    if not photo.exists():  # another test may have put its own photo there: any photo will do
        _gray_photo(photo)
    with Image.open(photo) as source:
        size = source.size
    prefix = _referenced(api, "SaveImage", "filename_prefix")

    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=300)
    assert history_outcome(entry) == "success", entry["status"]
    saved = [img for out in entry["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]
    assert len(saved) == 1 and saved[0]["subfolder"] == str(Path(prefix).parent)
    written = comfy_server.output_dir / saved[0]["subfolder"] / saved[0]["filename"]
    with Image.open(written) as result:
        assert result.size == size
        rgb = np.asarray(result.convert("RGB")).astype(int)
    chroma = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    assert chroma.mean() > 5, "the result is still gray"


async def test_a_broken_checkpoint_fails_the_prompt_with_a_message_naming_it(comfy_server):
    broken = comfy_server.models_dir / "ddcolor" / "broken_download.pth"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip, cut off
    photo = comfy_server.input_dir / "ddcolor_broken_case.png"
    _gray_photo(photo, 64, 48)
    g = Graph()
    image = g.node("LoadImage", image=photo.name)
    model = g.node("DDColorModelLoader", model_name=broken.name)
    colorized = g.node("DDColorColorize", image=image.out(0), model=model.out(0), preset="custom", input_size=64,
                       ab_upsample="nearest", keep_aspect=False, clamp_ab=False, precision="auto")
    g.node("PreviewImage", images=colorized.out(0))
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(g.prompt(), timeout=120)
    assert history_outcome(entry) == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors and errors[0]["node_type"] == "DDColorModelLoader"
    assert "broken_download.pth" in errors[0]["exception_message"]
    assert "truncated" in errors[0]["exception_message"]
