"""The GPEN templates on a real ComfyUI server: twins in sync, both graphs run end to end.

The templates name the official GPEN-BFR-512.pth and ddcolor_artistic.pth, which cannot be
downloaded here. The graphs run as shipped except for two inputs the test sets: the photo (a
synthetic one the fabricated detector finds a face in) and the GPEN file (the random-weight 256
generator: a 512 forward plus ParseNet would cost a minute of CPU per run). DDColor runs from a
random-weight checkpoint put under the template's own file name, at the template's settings.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import uuid
from pathlib import Path

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
from harness.paths import REPO_ROOT
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


def _gray_twins(folder, width: int, height: int) -> tuple[Path, Path]:
    """``gray8.png`` (mode L) and ``gray16.png`` (mode I;16): one left-to-right ramp at 8 and 16 bits."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    Image.fromarray(np.round(ramp * 255).astype(np.uint8)).save(folder / "gray8.png")
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(folder / "gray16.png")
    with Image.open(folder / "gray16.png") as check:
        assert check.mode == "I;16"
    return folder / "gray8.png", folder / "gray16.png"


async def test_portrait_template_passes_a_faceless_16_bit_gray_scan_through_unchanged(comfy_server, tmp_path):
    _, gray16 = _gray_twins(tmp_path, 96, 64)  # too small a ramp for the fabricated detector to fire
    name = f"gray16-{uuid.uuid4().hex[:8]}.png"
    (comfy_server.input_dir / name).write_bytes(gray16.read_bytes())
    api, ids = _prepared(comfy_server, PORTRAIT)
    _node(api, "RestorationLoadImage")[1]["inputs"]["image"] = name
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=400)
    assert history_outcome(entry) == "success", error_message(entry)
    assert "no face" in entry["outputs"][ids["GPENRestoreFaces"]]["text"][0]
    [saved] = output_files(comfy_server, entry, ids["SaveImage"])
    with Image.open(gray16) as scan:
        expected = np.asarray(scan, dtype=np.float64) / 65535.0
    result = load_png(saved) / 255.0
    assert result.shape == (64, 96, 3)
    assert np.abs(result - expected[..., None]).max() <= 1 / 255 + 1e-9, "the scan comes back as it went in"


@pytest.mark.parametrize("mode", ["old-photo"])  # GPEN then DDColor: covers the faces-only path too
def test_a_16_bit_scan_through_a_gpen_mode_matches_its_8_bit_twin(comfy_server, tmp_path, mode):
    """restore.py end to end, faces found and restored (random weights): bit depth must not matter."""
    install_checkpoint(comfy_server.models_dir / "ddcolor" / "ddcolor_artistic.pth", "convnext-t")
    _gray_twins(tmp_path / "scans", 256, 192)
    out = tmp_path / "restored"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "restore.py"), str(tmp_path / "scans"), "--mode", mode,
                           "--out", str(out), "--server", comfy_server.url, "--gpen-model", GPEN_TEST_FILE,
                           "--client-id", f"gpen-16-{uuid.uuid4().hex[:8]}"],
                          capture_output=True, text=True, timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    eight, sixteen = load_png(out / "gray8_restored.png") / 255.0, load_png(out / "gray16_restored.png") / 255.0
    assert eight.shape == sixteen.shape == (192, 256, 3)
    assert abs(eight.mean() - 0.5) > 0.02, "faces were found and restored (the random generator changes them)"
    assert abs(sixteen.mean() - eight.mean()) <= 1 / 255, (sixteen.mean(), eight.mean())
    assert np.abs(sixteen - eight).mean() <= 1 / 255


@pytest.fixture(autouse=True)
def _gpen_models(comfy_server):
    install_server_models(comfy_server.models_dir)
