"""The GPEN templates on a real ComfyUI server: twins in sync, both graphs run end to end.

The templates name the official GPEN-BFR-512.pth and ddcolor_artistic.pth, which cannot be
downloaded here. The graphs run as shipped except for two inputs the test sets: the photo (a
synthetic one the fabricated detector finds a face in) and the GPEN file (the random-weight 256
generator: a 512 forward plus ParseNet would cost a minute of CPU per run). DDColor runs from a
random-weight checkpoint put under the template's own file name, at the template's settings.
"""

from __future__ import annotations

import copy
import uuid

import numpy as np
import pytest
from harness.client import ComfyClient, history_outcome
from harness.ddcolor_checkpoints import install_checkpoint
from harness.gpen_checkpoints import (
    GPEN_TEST_FILE,
    bright_patch_image,
    error_message,
    install_server_models,
    load_png,
    output_files,
    save_png,
)
from harness.workflow_format import load_api_twin
from PIL import Image

PORTRAIT = "GPEN Portrait Enhance"
OLD_PHOTO = "Old Photo Restore (GPEN + DDColor)"
PHOTO = f"gpen-workflow-{uuid.uuid4().hex[:8]}.png"  # shared by both runs: the GPEN step is computed once




def _node(api: dict, class_type: str) -> tuple[str, dict]:
    [(node_id, node)] = [(k, v) for k, v in api.items() if v["class_type"] == class_type]
    return node_id, node


def _prepared(server, name: str) -> tuple[dict, dict[str, str]]:
    """The template's API twin with the test photo and the 256 generator; ids of the nodes to inspect."""
    photo = server.input_dir / PHOTO
    if not photo.exists():
        save_png(bright_patch_image(256, 320, cell=(3, 4)), photo)
    api = copy.deepcopy(load_api_twin(name))
    _node(api, "RestorationLoadImage")[1]["inputs"]["image"] = PHOTO
    _node(api, "GPENModelLoader")[1]["inputs"]["model_name"] = GPEN_TEST_FILE
    ids = {t: _node(api, t)[0] for t in ("GPENRestoreFaces", "SaveImage")}
    return api, ids




def test_templates_wire_the_documented_graph():
    portrait, old = load_api_twin(PORTRAIT), load_api_twin(OLD_PHOTO)
    assert _node(portrait, "GPENModelLoader")[1]["inputs"]["model_name"] == "GPEN-BFR-512.pth"
    faces_id, faces = _node(old, "GPENRestoreFaces")
    colorize = _node(old, "DDColorColorize")[1]["inputs"]
    assert faces["inputs"]["detection_threshold"] == 0.9
    assert colorize["image"] == [faces_id, 0], "faces are restored first, then the photo is colorized"
    assert colorize["face_mask"] == [faces_id, 1], "GPEN's mask feeds DDColor's face_mask"
    assert colorize["preset"] == "person"


async def test_portrait_template_restores_the_face(comfy_server):
    api, ids = _prepared(comfy_server, PORTRAIT)
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=400)
    assert history_outcome(entry) == "success", error_message(entry)
    [saved] = output_files(comfy_server, entry, ids["SaveImage"])
    assert saved.parent.name == "GPEN"
    source = load_png(comfy_server.input_dir / PHOTO)
    result = load_png(saved)
    assert result.shape == source.shape == (256, 320, 3)
    centre = (slice(3 * 32 - 10, 3 * 32 + 30), slice(4 * 32 - 10, 4 * 32 + 30))  # around the detected face
    assert np.abs(result[centre] - source[centre]).mean() > 10
    assert np.array_equal(result[:, -40:], source[:, -40:]), "far from the face nothing changes"
    assert entry["outputs"][ids["GPENRestoreFaces"]]["text"] == ["1 face(s) restored"]


async def test_old_photo_template_restores_faces_then_colorizes(comfy_server):
    api, ids = _prepared(comfy_server, OLD_PHOTO)
    checkpoint = _node(api, "DDColorModelLoader")[1]["inputs"]["model_name"]
    install_checkpoint(comfy_server.models_dir / "ddcolor" / checkpoint, "convnext-t")
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=400)
    assert history_outcome(entry) == "success", error_message(entry)
    [saved] = output_files(comfy_server, entry, ids["SaveImage"])
    assert saved.parent.name == "GPEN_DDColor"
    with Image.open(saved) as result:
        assert result.size == (320, 256)
        rgb = np.asarray(result.convert("RGB")).astype(int)
    chroma = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    assert chroma.mean() > 5, "the result is colorized"


@pytest.fixture(autouse=True)
def _gpen_models(comfy_server):
    install_server_models(comfy_server.models_dir)
