"""Wrong and damaged checkpoint files, and GPEN size switching, through the loader nodes on a real server."""

from __future__ import annotations

import shutil
import uuid

import cv2
import numpy as np
import pytest
import torch
from harness.client import ComfyClient, history_outcome
from harness.ddcolor_checkpoints import checkpoint_file
from harness.gpen_checkpoints import (
    GPEN_TEST_FILE,
    error_message,
    install_server_models,
    output_files,
    write_checkpoint,
)
from harness.graphs import Graph
from PIL import Image

GPEN_512_TEST_FILE = "gpen-512-size-switch-test.pth"


def _photo(server, name: str) -> str:
    y, x = np.mgrid[0:120, 0:100]
    rgb = np.stack([x * 2, y * 2, 255 - x], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(server.input_dir / name)
    return name


async def _error_of(server, graph: Graph) -> tuple[str, str]:
    async with ComfyClient(server.url) as c:
        entry = await c.run(graph.prompt(), timeout=120)
    assert history_outcome(entry) == "error"
    [error] = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    return error["node_type"], error["exception_message"]


async def test_a_gpen_file_in_the_ddcolor_folder_says_where_it_belongs(comfy_server):
    name = f"gpen-in-ddcolor-{uuid.uuid4().hex[:6]}.pth"
    write_checkpoint(comfy_server.models_dir / "ddcolor" / name, 256)
    g = Graph()
    image = g.node("RestorationLoadImage", image=_photo(comfy_server, "wrong-family.png"))
    model = g.node("DDColorModelLoader", model_name=name)
    colorized = g.node("DDColorColorize", image=image.out(0), model=model.out(0), preset="custom", input_size=64,
                       ab_upsample="nearest", keep_aspect=False, clamp_ab=False, precision="auto")
    g.node("PreviewImage", images=colorized.out(0))
    node_type, message = await _error_of(comfy_server, g)
    assert node_type == "DDColorModelLoader"
    assert message.strip() == (f"{name} is a GPEN face-restoration generator, not a DDColor colorization checkpoint: "
                       "move it to models/gpen (this loader reads models/ddcolor)")


async def test_a_ddcolor_file_in_the_gpen_folder_says_where_it_belongs(comfy_server):
    name = f"ddcolor-in-gpen-{uuid.uuid4().hex[:6]}.pth"
    target = comfy_server.models_dir / "gpen" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint_file("convnext-t"), target)
    g = Graph()
    image = g.node("RestorationLoadImage", image=_photo(comfy_server, "wrong-family.png"))
    model = g.node("GPENModelLoader", model_name=name)
    restored = g.node("GPENRestoreAlignedFace", image=image.out(0), gpen_model=model.out(0), keep_input_size=False)
    g.node("PreviewImage", images=restored.out(0))
    node_type, message = await _error_of(comfy_server, g)
    assert node_type == "GPENModelLoader"
    assert message.startswith(f"{name} is a DDColor colorization checkpoint, not a GPEN face-restoration "
                              "generator: move it to models/ddcolor")


async def test_a_truncated_gpen_file_says_delete_it(comfy_server):
    install_server_models(comfy_server.models_dir)
    name = f"gpen-cut-{uuid.uuid4().hex[:6]}.pth"
    whole = (comfy_server.models_dir / "gpen" / GPEN_TEST_FILE).read_bytes()
    (comfy_server.models_dir / "gpen" / name).write_bytes(whole[: len(whole) * 4 // 10])
    g = Graph()
    image = g.node("RestorationLoadImage", image=_photo(comfy_server, "wrong-family.png"))
    model = g.node("GPENModelLoader", model_name=name)
    restored = g.node("GPENRestoreAlignedFace", image=image.out(0), gpen_model=model.out(0), keep_input_size=False)
    g.node("PreviewImage", images=restored.out(0))
    node_type, message = await _error_of(comfy_server, g)
    assert node_type == "GPENModelLoader" and message.startswith(f"{name} is truncated") and "delete it" in message


@pytest.fixture
def two_gpen_sizes(comfy_server):
    install_server_models(comfy_server.models_dir)
    big = comfy_server.models_dir / "gpen" / GPEN_512_TEST_FILE
    if not big.exists():
        write_checkpoint(big, 512, seed=5)
    return comfy_server


async def test_switching_gpen_sizes_gives_identical_results_per_size(two_gpen_sizes):
    server = two_gpen_sizes
    tag = uuid.uuid4().hex[:6]
    source = _photo(server, f"switch-{tag}-a.png")
    for copy in ("b",):  # same pixels under a new name: nothing is served from ComfyUI's cache
        shutil.copyfile(server.input_dir / source, server.input_dir / f"switch-{tag}-{copy}.png")

    async def run(image_name: str, files: list[str]) -> dict[str, np.ndarray]:
        g = Graph()
        image = g.node("RestorationLoadImage", image=image_name)
        saves = {}
        for file in files:
            model = g.node("GPENModelLoader", model_name=file)
            restored = g.node("GPENRestoreAlignedFace", image=image.out(0), gpen_model=model.out(0),
                              keep_input_size=False)
            saves[file] = g.node("RestorationSaveImage", images=restored.out(0),
                                 filename_prefix=f"gpen_switch/{tag}", bit_depth="16")
        async with ComfyClient(server.url) as c:
            entry = await c.run(g.prompt(), timeout=300)
        assert history_outcome(entry) == "success", error_message(entry)
        return {file: cv2.imread(str(output_files(server, entry, node)[0]), cv2.IMREAD_UNCHANGED)
                for file, node in saves.items()}

    # One 512 forward pass only (~15 s on 2 CPU cores): the 256 result must not depend on whether the
    # 512 generator ran before it, in the same graph and across runs.
    only_256 = await run(source, [GPEN_TEST_FILE])
    both = await run(f"switch-{tag}-b.png", [GPEN_512_TEST_FILE, GPEN_TEST_FILE])
    assert both[GPEN_TEST_FILE].shape == (256, 256, 3) and both[GPEN_512_TEST_FILE].shape == (512, 512, 3)
    assert np.array_equal(both[GPEN_TEST_FILE], only_256[GPEN_TEST_FILE])
    assert not torch.equal(torch.from_numpy(both[GPEN_TEST_FILE][:4, :4].astype(np.int32)),
                           torch.zeros(4, 4, 3, dtype=torch.int32)), "the generator produced an image"
