"""The GPEN nodes on a real ComfyUI server, with random-weight generators and fabricated helper networks."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from harness.client import ComfyClient, history_outcome
from harness.gpen_checkpoints import (
    FAKE_FACE_BOX,
    GPEN_TEST_FILE,
    bright_patch_image,
    error_message,
    fake_landmark_offsets,
    install_server_models,
    load_png,
    output_files,
    save_png,
)
from harness.graphs import Graph
from restoration_governor.restoration.gpen.alignment import footprint, invert_affine
from restoration_governor.restoration.gpen.pipeline import alignment_matrix


@pytest.fixture
def gpen_server(comfy_server):
    install_server_models(comfy_server.models_dir)
    return comfy_server


async def test_nodes_are_registered_with_their_options(gpen_server):
    restorers = gpen_server.models_dir / "facerestore_models"
    restorers.mkdir(parents=True, exist_ok=True)
    # A GPEN-shaped file under any name is listed; other face restorers in the shared folder are not.
    torch.save({"final_linear.0.weight": torch.zeros(1), "generator.to_rgb1.conv.weight": torch.zeros(1)},
               restorers / "my-portrait-model.pth")
    torch.save({"quantize.embedding.weight": torch.zeros(1)}, restorers / "codeformer.pth")
    async with ComfyClient(gpen_server.url) as c:
        info = await c.object_info()
    loader, faces, aligned = info["GPENModelLoader"], info["GPENRestoreFaces"], info["GPENRestoreAlignedFace"]
    assert [x["display_name"] for x in (loader, faces, aligned)] == [
        "GPEN Model Loader", "GPEN Restore Faces", "GPEN Restore Aligned Face"]
    assert {x["category"] for x in (loader, faces, aligned)} == {"restoration-governor/GPEN"}
    names = loader["input"]["required"]["model_name"][0]
    assert {GPEN_TEST_FILE, "GPEN-BFR-512.pth", "my-portrait-model.pth"} <= set(names)
    assert "codeformer.pth" not in names
    assert loader["output"] == ["GPEN_MODEL"]
    required = faces["input"]["required"]
    assert list(required) == ["image", "gpen_model", "detection_threshold", "only_largest_face", "alpha",
                              "restore_small_faces", "small_face_size"]
    assert required["detection_threshold"][1]["default"] == 0.9
    assert faces["output"] == ["IMAGE", "MASK"]
    assert aligned["output"] == ["IMAGE"]
    resize = aligned["input"]["optional"]["resize_filter"]
    assert resize[0] == ["bilinear (official)", "antialiased"] and resize[1]["default"] == "bilinear (official)"


async def test_aligned_face_node_restores_end_to_end(gpen_server, tmp_path):
    g = torch.Generator().manual_seed(3)
    crop = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 10, generator=g), size=(200, 160),
                                           mode="bicubic", align_corners=False).clamp(0, 1).permute(0, 2, 3, 1)
    name = f"gpen-aligned-{uuid.uuid4().hex[:8]}.png"
    save_png(crop, gpen_server.input_dir / name)
    prefix = f"gpen_test/aligned-{uuid.uuid4().hex[:8]}"
    graph = Graph()
    image = graph.node("LoadImage", image=name)
    model = graph.node("GPENModelLoader", model_name=GPEN_TEST_FILE)
    restored = graph.node("GPENRestoreAlignedFace", image=image.out(0), gpen_model=model.out(0),
                          keep_input_size=False)
    save = graph.node("SaveImage", images=restored.out(0), filename_prefix=prefix)
    async with ComfyClient(gpen_server.url) as c:
        entry = await c.run(graph.prompt(), timeout=300)
    assert history_outcome(entry) == "success", error_message(entry)
    [out_path] = output_files(gpen_server, entry, save)
    served = load_png(out_path)
    assert served.shape == (256, 256, 3)

    # The same restoration computed here, from the same checkpoint and the same 8-bit input.
    from restoration_governor.restoration.gpen.aligned import restore_aligned
    from restoration_governor.restoration.gpen.loading import load_generator_file
    from restoration_governor.restoration.gpen.pipeline import GeneratorRestorer

    model_here = load_generator_file(gpen_server.models_dir / "gpen" / GPEN_TEST_FILE)
    loaded = torch.from_numpy(load_png(gpen_server.input_dir / name).astype(np.float32) / 255.0)[None]
    expected = restore_aligned(loaded, GeneratorRestorer(model_here), 256)
    expected_u8 = np.clip(255.0 * expected[0].numpy(), 0, 255).astype(np.int16)
    diff = np.abs(served - expected_u8)
    assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())


async def test_restore_faces_node_restores_the_face_and_passes_a_faceless_photo(gpen_server):
    tag = uuid.uuid4().hex[:8]
    with_face = bright_patch_image(256, 256, cell=(3, 3))
    without = bright_patch_image(256, 256, cell=(3, 3), patch=0)
    save_png(with_face, gpen_server.input_dir / f"gpen-face-{tag}.png")
    save_png(without, gpen_server.input_dir / f"gpen-noface-{tag}.png")
    graph = Graph()
    a = graph.node("LoadImage", image=f"gpen-face-{tag}.png")
    b = graph.node("LoadImage", image=f"gpen-noface-{tag}.png")
    batch = graph.node("ImageBatch", image1=a.out(0), image2=b.out(0))
    model = graph.node("GPENModelLoader", model_name=GPEN_TEST_FILE)
    faces = graph.node("GPENRestoreFaces", image=batch.out(0), gpen_model=model.out(0), detection_threshold=0.9,
                       only_largest_face=False, alpha=1.0, restore_small_faces=True, small_face_size=0)
    save = graph.node("SaveImage", images=faces.out(0), filename_prefix=f"gpen_test/faces-{tag}")
    mask_image = graph.node("MaskToImage", mask=faces.out(1))
    save_mask = graph.node("SaveImage", images=mask_image.out(0), filename_prefix=f"gpen_test/mask-{tag}")
    async with ComfyClient(gpen_server.url) as c:
        entry = await c.run(graph.prompt(), timeout=300)
    assert history_outcome(entry) == "success", error_message(entry)
    restored = [load_png(p) for p in output_files(gpen_server, entry, save)]
    masks = [load_png(p)[..., 0] for p in output_files(gpen_server, entry, save_mask)]
    inputs = [load_png(gpen_server.input_dir / f"gpen-face-{tag}.png"),
              load_png(gpen_server.input_dir / f"gpen-noface-{tag}.png")]

    # Photo 1: one face, detected at the cell centre (112, 112); restored inside, untouched far away.
    centre = 112
    half = int(FAKE_FACE_BOX / 2)
    face_box = (slice(centre - half // 2, centre + half // 2), slice(centre - half // 2, centre + half // 2))
    assert masks[0][face_box].min() >= 250, "the face region is pasted at (nearly) full strength"
    assert np.abs(restored[0][face_box] - inputs[0][face_box]).mean() > 10, "and it changed"
    to_crop = alignment_matrix(centre + fake_landmark_offsets().numpy().astype(np.float64), 256)
    x0, y0, x1, y1 = footprint(invert_affine(to_crop), (256, 256), (256, 256))
    untouched = np.ones((256, 256), dtype=bool)
    untouched[y0:y1, x0:x1] = False  # everything the face crop cannot reach
    assert untouched.sum() > 5_000 and masks[0][untouched].max() == 0
    assert np.array_equal(restored[0][untouched], inputs[0][untouched])
    # Photo 2: no face, so bit-identical and an empty mask, with a note instead of an error.
    assert np.array_equal(restored[1], inputs[1])
    assert masks[1].max() == 0
    note = entry["outputs"][faces]["text"][0]
    assert note.startswith("1 face(s) restored") and "1 of 2 images: no face ≥ 0.9 (image 2)" in note


async def test_a_file_that_is_not_gpen_is_refused_with_a_clear_error(gpen_server):
    bad = gpen_server.models_dir / "gpen" / "not-a-gpen-model.pth"
    torch.save({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, bad)
    graph = Graph()
    model = graph.node("GPENModelLoader", model_name=bad.name)
    blank = graph.node("EmptyImage", width=64, height=64, batch_size=1, color=0)
    restored = graph.node("GPENRestoreAlignedFace", image=blank.out(0), gpen_model=model.out(0), keep_input_size=False)
    graph.node("PreviewImage", images=restored.out(0))
    async with ComfyClient(gpen_server.url) as c:
        entry = await c.run(graph.prompt(), timeout=120)
    assert history_outcome(entry) == "error"
    message = error_message(entry)
    assert "not-a-gpen-model.pth is not a GPEN generator" in message
    assert "conv_first.weight" in message
