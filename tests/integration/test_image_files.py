"""16-bit scans through the shipped templates and the 16-bit save node, on a real ComfyUI server."""

from __future__ import annotations

import copy
import uuid

import cv2
import numpy as np
import pytest
from harness.client import ComfyClient, history_outcome
from harness.ddcolor_checkpoints import install_checkpoint
from harness.graphs import Graph
from harness.workflow_format import load_api_twin
from PIL import Image

RAMP = np.round(np.linspace(0, 65535, 384)).astype(np.uint16)[None, :].repeat(256, axis=0)  # 384×256


def _node(api: dict, class_type: str) -> dict:
    [node] = [v for v in api.values() if v["class_type"] == class_type]
    return node


def _saved(entry: dict) -> list[dict]:
    return [img for out in entry["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]


async def test_loader_nodes_are_registered_like_core_load_and_save(comfy_server):
    async with ComfyClient(comfy_server.url) as c:
        info = await c.object_info()
    loader, saver = info["RestorationLoadImage"], info["RestorationSaveImage"]
    assert loader["display_name"] == "Load Photo (any bit depth)"
    assert loader["output"] == ["IMAGE", "MASK"] == info["LoadImage"]["output"]
    assert loader["input"]["required"]["image"][1]["image_upload"] is True
    assert saver["display_name"] == "Save Image (8/16-bit PNG)" and saver["output_node"] is True
    assert saver["input"]["required"]["bit_depth"][0] == ["8", "16"]
    for template in ("DDColor Person Restore", "DDColor Building Restore", "GPEN Portrait Enhance",
                     "Old Photo Restore (GPEN + DDColor)"):
        types = {n["class_type"] for n in load_api_twin(template).values()}
        assert "RestorationLoadImage" in types and "LoadImage" not in types, template


@pytest.mark.parametrize("suffix", ["png", "tif"])
async def test_a_16_bit_gray_ramp_survives_the_person_template(comfy_server, suffix):
    name = f"ramp16-{uuid.uuid4().hex[:6]}.{suffix}"
    Image.fromarray(RAMP).save(comfy_server.input_dir / name)
    api = copy.deepcopy(load_api_twin("DDColor Person Restore"))
    checkpoint = _node(api, "DDColorModelLoader")["inputs"]["model_name"]
    install_checkpoint(comfy_server.models_dir / "ddcolor" / checkpoint, "convnext-t")
    _node(api, "RestorationLoadImage")["inputs"]["image"] = name
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=300)
    assert history_outcome(entry) == "success", entry["status"]
    [saved] = _saved(entry)
    with Image.open(comfy_server.output_dir / saved["subfolder"] / saved["filename"]) as result:
        luminance = np.asarray(result.convert("L"), dtype=np.float64)
    assert luminance.shape == (256, 384)
    correlation = np.corrcoef(luminance.ravel(), RAMP.astype(np.float64).ravel())[0, 1]
    assert correlation > 0.99, f"luminance no longer follows the ramp (r = {correlation:.3f})"
    assert luminance.mean() < 200, "the output is washed out"


async def test_16_bit_in_16_bit_out(comfy_server):
    name = f"ramp16-save-{uuid.uuid4().hex[:6]}.png"
    Image.fromarray(RAMP).save(comfy_server.input_dir / name)
    g = Graph()
    image = g.node("RestorationLoadImage", image=name)
    g.node("RestorationSaveImage", images=image.out(0), filename_prefix="archive/ramp16", bit_depth="16")
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(g.prompt(), timeout=60)
    assert history_outcome(entry) == "success", entry["status"]
    [saved] = _saved(entry)
    assert saved["subfolder"] == "archive"
    path = comfy_server.output_dir / saved["subfolder"] / saved["filename"]
    written = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == (256, 384, 3)
    assert np.array_equal(written[..., 0], RAMP) and np.array_equal(written[..., 2], RAMP)
    with Image.open(path) as png:
        assert "prompt" in png.info  # the workflow travels with the file, as with Save Image


async def test_a_file_that_is_not_an_image_fails_with_its_name(comfy_server):
    name = f"broken-{uuid.uuid4().hex[:6]}.png"
    (comfy_server.input_dir / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    g = Graph()
    image = g.node("RestorationLoadImage", image=name)
    g.node("PreviewImage", images=image.out(0))
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(g.prompt(), timeout=60)
    assert history_outcome(entry) == "error"
    [error] = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert error["node_type"] == "RestorationLoadImage" and name in error["exception_message"]


async def test_core_load_image_clips_the_ramp_and_ddcolor_says_so(comfy_server):
    name = f"ramp16-core-{uuid.uuid4().hex[:6]}.png"
    Image.fromarray(RAMP).save(comfy_server.input_dir / name)
    install_checkpoint(comfy_server.models_dir / "ddcolor" / "ddcolor_paper_tiny.pth", "convnext-t")
    g = Graph()
    image = g.node("LoadImage", image=name)
    model = g.node("DDColorModelLoader", model_name="ddcolor_paper_tiny.pth")
    colorize = g.node("DDColorColorize", image=image.out(0), model=model.out(0), preset="custom", input_size=64,
                      ab_upsample="nearest", keep_aspect=False, clamp_ab=False, precision="auto")
    g.node("PreviewImage", images=colorize.out(0))
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(g.prompt(), timeout=120)
    assert history_outcome(entry) == "success", entry["status"]
    [note] = entry["outputs"][colorize]["text"]
    assert "the input looks clipped: 99." in note and "Load Photo (any bit depth)" in note
