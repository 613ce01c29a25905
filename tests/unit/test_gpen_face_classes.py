"""The face path class by class (issue 15.3): no face, many faces, channels, colour order, seams, sizes,
failures. Detections are injected; generators and parsers are markers whose effect is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness.faces import face_at, fixed_detector, full_mask, identity, interior, smooth_photo
from restoration_governor.restoration.ddcolor.pipeline import colorize
from restoration_governor.restoration.gpen.aligned import restore_aligned
from restoration_governor.restoration.gpen.detection import DetectedFace
from restoration_governor.restoration.gpen.parsing import FaceParser
from restoration_governor.restoration.gpen.pipeline import (
    Chunking,
    FaceOptions,
    restore_faces,
)

torch.set_num_threads(2)


def marker(faces: torch.Tensor) -> torch.Tensor:
    return faces + 0.1


def constant_half(faces: torch.Tensor) -> torch.Tensor:
    return torch.full_like(faces, 0.5)


class AllSkinParseNet(torch.nn.Module):
    """ParseNet stand-in that labels every pixel skin: the mask is GPEN's border + blur alone."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 19, 512, 512)
        logits[:, 1] = 1.0
        return logits, x


# -- no face -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("only_largest", [False, True])
def test_images_without_a_face_above_the_threshold_pass_through_bit_identical(only_largest):
    photo = smooth_photo(batch=3)
    weak = face_at(0.25, 0.0, 60.0, 30.0, score=0.5)
    good = face_at(0.25, 0.0, 60.0, 30.0)
    result = restore_faces(photo, detect=fixed_detector([[], [weak], [good]]), restore=marker, parse=full_mask,
                           face_size=512, options=FaceOptions(only_largest_face=only_largest))
    assert result.images.shape == photo.shape
    assert torch.equal(result.images[0], photo[0]) and torch.equal(result.images[1], photo[1])
    assert torch.count_nonzero(result.masks[:2]) == 0
    assert (result.images[2] - photo[2]).abs().max() > 0.09, "image 3 (with a face) is restored, in its place"
    assert result.notes(0.9) == ["2 of 3 images: no face ≥ 0.9 (images 1, 2); they pass through unchanged"]


def test_only_largest_face_with_no_faces_at_all():
    photo = smooth_photo(batch=2)
    result = restore_faces(photo, detect=fixed_detector([[], []]), restore=marker, parse=full_mask, face_size=256,
                           options=FaceOptions(only_largest_face=True))
    assert torch.equal(result.images, photo) and result.faces_restored == [0, 0]


# -- many faces ----------------------------------------------------------------------------------------

def _grid_faces(rows: int = 5, cols: int = 8, size: int = 256) -> list[DetectedFace]:
    # GPEN crops of ~141 px on a 128 × 204 px grid: neighbouring crops overlap by a few pixels
    return [face_at(0.55, 0.0, 128 * c - 6.0, 204 * r + 30.0, size=size) for r in range(rows) for c in range(cols)]


def test_forty_faces_each_changed_exactly_once_for_every_chunk_size():
    photo = smooth_photo(height=1024, width=1024) * 0.8
    faces = _grid_faces()
    results = {}
    batches: dict[int, list[int]] = {}
    for chunk in (1, 8, 64):
        seen: list[int] = []

        def restore(x, seen=seen):
            seen.append(x.shape[0])
            return marker(x)

        results[chunk] = restore_faces(photo, detect=fixed_detector([faces]), restore=restore, parse=full_mask,
                                       face_size=256, chunking=Chunking(chunk_size=chunk))
        batches[chunk] = seen
    result = results[8]
    assert result.faces_restored == [40]
    assert torch.equal(results[1].images, result.images) and torch.equal(results[64].images, result.images)
    diff = result.images[0] - photo[0]
    inside = torch.zeros(1024, 1024, dtype=torch.bool)
    for face in faces:
        inside |= interior(face, 256, 1024, 1024)
    assert ((diff[inside] - 0.1).abs() < 0.01).all(), "every face got the marker once"
    assert diff.max() < 0.11, "overlapping crops were not added twice: the larger mask wins"
    untouched = result.masks[0] == 0
    assert untouched.sum() > 1000 and torch.equal(result.images[0][untouched], photo[0][untouched])
    # the faces held at once (the generator's batch, the dominant working memory) fall with the chunk size
    assert [max(batches[c]) for c in (64, 8, 1)] == [40, 8, 1]


# -- channel count -------------------------------------------------------------------------------------

def test_gray_one_channel_photo_goes_through_restore_faces_and_stays_one_channel():
    photo = smooth_photo()[..., :1].contiguous()
    face = face_at(0.25, 0.0, 60.0, 30.0)
    seen = []

    def detect(image, threshold):
        seen.append(image.shape)
        return [face]

    result = restore_faces(photo, detect=detect, restore=identity, parse=full_mask, face_size=512)
    assert seen == [(192, 256, 3)], "the detector always sees RGB"
    assert result.images.shape == (1, 192, 256, 1)
    inside = interior(face, 512, 192, 256)
    assert (result.images[0, ..., 0] - photo[0, ..., 0]).abs()[inside].max() < 2e-3
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][outside], photo[0][outside])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_aligned_faces_keep_their_channel_count(channels):
    crops = torch.rand(2, 64, 64, channels)
    out = restore_aligned(crops, identity, 64)
    assert out.shape == (2, 64, 64, channels)
    torch.testing.assert_close(out, crops, atol=1e-6, rtol=0)


def test_two_channels_are_refused_the_same_way_by_every_model_path():
    two = torch.rand(1, 32, 32, 2)
    with pytest.raises(ValueError, match=r"GPEN Restore Faces expected an IMAGE batch \(B, H, W, 1\|3\|4\)"):
        restore_faces(two, detect=fixed_detector([[]]), restore=identity, parse=full_mask, face_size=256)
    with pytest.raises(ValueError, match=r"GPEN Restore Aligned Face expected an IMAGE batch"):
        restore_aligned(two, identity, 256)
    with pytest.raises(ValueError, match=r"DDColor Colorize expected an IMAGE batch"):
        colorize(two, torch.nn.Conv2d(3, 2, 1), None)


# -- channel order and gray ----------------------------------------------------------------------------

def test_channel_order_survives_the_round_trip():
    photo = torch.empty(1, 192, 256, 3)
    photo[..., 0], photo[..., 1], photo[..., 2] = 0.2, 0.5, 0.8
    face = face_at(0.25, 0.0, 60.0, 30.0)
    painted = interior(face, 512, 192, 256, margin=-12)  # the face, painted a little beyond its crop
    photo[0][painted] = torch.tensor([0.9, 0.3, 0.1])
    result = restore_faces(photo, detect=fixed_detector([[face]]), restore=identity, parse=full_mask, face_size=512)
    inside = interior(face, 512, 192, 256)
    assert (result.images[0] - photo[0]).abs()[inside].max() <= 2 / 255
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][outside], photo[0][outside])
    in_face = result.images[0][inside]
    assert in_face[:, 0].mean() > in_face[:, 2].mean() + 0.5, "R and B were not swapped"


def test_gray_rgb_stays_gray_through_paste_back():
    photo = smooth_photo()[..., :1].expand(-1, -1, -1, 3).contiguous()
    result = restore_faces(photo, detect=fixed_detector([[face_at(0.25, 0.0, 60.0, 30.0)]]), restore=marker,
                           parse=full_mask, face_size=512)
    assert torch.equal(result.images[..., 0], result.images[..., 2])
    assert torch.equal(result.images[..., 1], result.images[..., 2])


# -- seams ---------------------------------------------------------------------------------------------

def _mask_profile(mask: torch.Tensor, row: int) -> torch.Tensor:
    return mask[row]


def _face_box_width(face: DetectedFace) -> float:
    return face.box[2] - face.box[0]


@pytest.mark.parametrize("face_width", [200, 40])
def test_paste_back_mask_is_gpens_feathered_one(face_width):
    scale = face_width / (0.6 * 512)
    face = face_at(scale, 0.0, 20.0, 20.0)
    size = int(512 * scale) + 40
    black = torch.zeros(1, size, size, 3)
    result = restore_faces(black, detect=fixed_detector([[face]]), restore=constant_half,
                           parse=FaceParser(AllSkinParseNet()), face_size=512)
    mask = result.masks[0]
    assert abs(_face_box_width(face) - face_width) < 1
    torch.testing.assert_close(result.images[0], 0.5 * mask[..., None].expand(-1, -1, 3), atol=1 / 255, rtol=0)
    steps = max(float((mask[1:] - mask[:-1]).abs().max()), float((mask[:, 1:] - mask[:, :-1]).abs().max()))
    assert mask.max() > 0.99 and steps < 0.6, "no hard 0 → 1 step"
    centre_row = mask[size // 2]
    ramp = int(((centre_row > 0.05) & (centre_row < 0.95)).sum()) / 2  # both sides of the face
    assert ramp >= 0.04 * face_width, f"ramp of {ramp} px for a {face_width} px face"


def test_overlapping_faces_combine_by_maximum_without_a_dark_line():
    a = face_at(0.65, 0.0, 20.0, 20.0)
    b = face_at(0.65, 0.0, 20.0 + 0.6 * 0.65 * 512, 20.0)  # crops overlap by 40 %
    black = torch.zeros(1, 380, 600, 3)
    parse = FaceParser(AllSkinParseNet())

    def run(faces):
        return restore_faces(black, detect=fixed_detector([faces]), restore=constant_half, parse=parse,
                             face_size=512)

    both, only_a, only_b = run([a, b]), run([a]), run([b])
    expected = torch.maximum(only_a.masks[0], only_b.masks[0])
    torch.testing.assert_close(both.masks[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(both.images[0, ..., 0], 0.5 * expected, atol=1 / 255, rtol=0)
    row = both.images[0, 190, :, 0]
    centre_a, centre_b = int(a.box[0] + a.box[2]) // 2, int(b.box[0] + b.box[2]) // 2
    assert row[centre_a:centre_b].min() > 0.49, "no dark line between the faces"


# -- sizes ---------------------------------------------------------------------------------------------

def test_small_face_skipped_with_a_note_and_a_huge_one_restored():
    tiny = face_at(10 / (0.6 * 256), 0.0, 3600.0, 1000.0, size=256)  # far outside the huge face's crop
    huge_scale = 1800 / (0.6 * 256)
    huge = face_at(huge_scale, 0.0, 1200 - 128 * huge_scale, 1100 - 128 * huge_scale, size=256)
    photo = torch.full((1, 2200, 3800, 3), 0.3)
    result = restore_faces(photo, detect=fixed_detector([[tiny, huge]]), restore=marker, parse=full_mask,
                           face_size=256, options=FaceOptions(restore_small_faces=False, small_face_size=24))
    assert result.faces_restored == [1] and result.faces_skipped_small == [1]
    assert result.notes(0.9) == ["the image: 1 face(s) restored, 1 face(s) smaller than the small-face size "
                                 "left untouched"]
    assert abs(float(result.images[0, 1100, 1200, 0]) - 0.4) < 1e-3, "the 1800 px face is restored"
    assert torch.equal(result.images[0, :, 3000:], photo[0, :, 3000:]), "the 10 px face is not"


# -- failures ------------------------------------------------------------------------------------------

def test_a_failing_generator_fails_loudly():
    def broken(_faces):
        raise RuntimeError("generator exploded: bad weights")

    with pytest.raises(RuntimeError, match="generator exploded"):
        restore_faces(smooth_photo(), detect=fixed_detector([[face_at(0.25, 0.0, 60.0, 30.0)]]), restore=broken,
                      parse=full_mask, face_size=512)
    with pytest.raises(RuntimeError, match="generator exploded"):
        restore_aligned(torch.rand(1, 32, 32, 3), broken, 32)


_LARGE_PHOTO_SCRIPT = r"""
import sys, types
import psutil, torch
pkg = types.ModuleType("restoration_governor"); pkg.__path__ = [sys.argv[1]]; sys.modules["restoration_governor"] = pkg
sys.path.insert(0, sys.argv[2])
from harness.faces import face_at
from restoration_governor.restoration.gpen.detection import FaceDetector
from restoration_governor.restoration.gpen.pipeline import restore_faces

class OneFaceRetina(torch.nn.Module):
    cfg = {"min_sizes": [[16, 32], [64, 128], [256, 512]], "steps": [8, 16, 32], "variance": [0.1, 0.2]}
    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.fed = None
    def forward(self, x):
        self.fed = tuple(x.shape)
        n = sum(-(-x.shape[2] // s) * -(-x.shape[3] // s) * 2 for s in (8, 16, 32))
        conf = torch.zeros(1, n, 2)
        conf[..., 0] = 1.0
        return torch.zeros(1, n, 4), conf, torch.zeros(1, n, 10)

torch.set_num_threads(2)
before = psutil.Process().memory_info().rss
photo = torch.rand(1, 4000, 6000, 3)
net = OneFaceRetina()
detector = FaceDetector(net)
face = face_at(0.7, 10.0, 2500.0, 1500.0, size=256)
def detect(image, threshold):
    assert detector(image, threshold) == []
    return [face]
result = restore_faces(photo, detect=detect, restore=lambda f: f + 0.1,
                       parse=lambda f: torch.ones(f.shape[0], f.shape[2], f.shape[3]), face_size=256)
assert result.faces_restored == [1]
# VmHWM: this process image's peak RSS (ru_maxrss would include the forking pytest process's peak)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(net.fed, (peak - before) / photo.numel() / 4)
"""


def test_a_6000x4000_photo_runs_within_four_times_its_size():
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _LARGE_PHOTO_SCRIPT, str(tests.parent), str(tests)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    fed, ratio = done.stdout.strip().rsplit(" ", 1)
    assert fed == "(1, 3, 667, 1000)", "the detector sees a downscaled copy"
    assert float(ratio) < 4.0, f"peak memory {float(ratio):.2f}× the input photo (input included)"


# -- official resize (issue 15.2) ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [256, 512, 1024, 2048])
def test_aligned_resize_matches_the_official_pipeline_within_one_level(size):
    cv2 = pytest.importorskip("cv2")
    crop_side = size * 3 // 2 if size < 2048 else 1536  # shrink for 256..1024, enlarge for 2048
    rng = np.random.default_rng(size)
    crop = rng.integers(0, 256, (crop_side, crop_side, 3), dtype=np.uint8)
    official = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    ours = restore_aligned(torch.from_numpy(crop)[None].float() / 255.0, identity, size)
    levels = torch.round(ours[0] * 255).to(torch.int16).numpy()
    assert np.abs(levels - official).max() <= 1


def test_antialiased_shrink_is_an_option_that_leaves_the_official_result():
    crop = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (512, 512, 3)).astype(np.float32) / 255)[None]
    official = restore_aligned(crop, identity, 256)
    smoother = restore_aligned(crop, identity, 256, antialias=True)
    assert (smoother - official).abs().max() * 255 > 9
    assert smoother.std() < official.std(), "antialiasing filters the shrink (less aliasing, softer)"


def test_keep_input_size_resizes_back_the_same_way():
    crop = smooth_photo(height=300, width=200)
    out = restore_aligned(crop, identity, 256, keep_input_size=True)
    assert out.shape == (1, 300, 200, 3)
    assert (out - crop).abs().max() < 0.02
