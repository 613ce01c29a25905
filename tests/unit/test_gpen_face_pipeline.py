"""The whole-photo face pipeline with detections injected at the Python level, plus its helper networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from harness.faces import face_at, fixed_detector, full_mask, identity, interior, smooth_photo
from harness.gpen_checkpoints import (
    FAKE_FACE_BOX,
    bright_patch_image,
    detector_state_dict,
    fake_landmark_offsets,
)
from restoration_governor.restoration.gpen.aligned import restore_aligned
from restoration_governor.restoration.gpen.alignment import apply_affine, invert_affine, reference_points
from restoration_governor.restoration.gpen.detection import DetectedFace, FaceDetector, build_detector_network
from restoration_governor.restoration.gpen.parsing import BORDER, FaceParser, gaussian_taps
from restoration_governor.restoration.gpen.pipeline import (
    Chunking,
    FaceOptions,
    GeneratorRestorer,
    alignment_matrix,
    restore_faces,
    smooth,
)

torch.set_num_threads(2)


# -- round trip and pass-through -----------------------------------------------------------------------

def test_identity_restore_round_trip_reproduces_the_face_region():
    photo = smooth_photo()
    face = face_at(0.25, 20.0, 60.0, 30.0)  # a ~130 px face, rotated
    result = restore_faces(photo, detect=fixed_detector([[face]]), restore=identity, parse=full_mask,
                           face_size=512, options=FaceOptions(small_face_size=0))
    inside = interior(face, 512, 192, 256)
    assert inside.sum() > 5000
    err = (result.images[0] - photo[0]).abs().amax(dim=-1)
    assert err[inside].max() < 2e-3, "warp → identity → inverse warp reproduces the input inside the face"
    assert torch.equal(result.images[0][~result.masks[0].bool()], photo[0][~result.masks[0].bool()])
    assert result.masks[0][inside].min() > 0.999
    assert result.faces_restored == [1] and result.notes() == []


def test_round_trip_at_native_scale_is_nearly_exact():
    photo = smooth_photo(height=300, width=300)
    face = face_at(1.0, 0.0, 20.0, 30.0, size=256)  # crop pixels coincide with image pixels
    result = restore_faces(photo, detect=fixed_detector([[face]]), restore=identity, parse=full_mask,
                           face_size=256, options=FaceOptions(small_face_size=0))
    inside = interior(face, 256, 300, 300, margin=1)
    assert (result.images[0] - photo[0]).abs()[inside].max() < 1e-5


def test_no_face_passes_through_unchanged_with_a_note():
    photo = smooth_photo(batch=2)

    def never(_):
        raise AssertionError("nothing to restore or parse")

    result = restore_faces(photo, detect=fixed_detector([[], []]), restore=never, parse=never, face_size=512)
    assert torch.equal(result.images, photo)
    assert result.images.data_ptr() != photo.data_ptr(), "the input tensor is never modified in place"
    assert torch.count_nonzero(result.masks) == 0 and result.masks.shape == (2, 192, 256)
    notes = result.notes(0.9)
    assert notes == ["2 of 2 images: no face ≥ 0.9 (images 1, 2); they pass through unchanged"]


def test_only_images_with_faces_change():
    photo = smooth_photo(batch=2)
    face = face_at(0.25, 0.0, 60.0, 30.0)
    result = restore_faces(photo, detect=fixed_detector([[], [face]]), restore=lambda f: 1 - f, parse=full_mask,
                           face_size=512)
    assert torch.equal(result.images[0], photo[0])
    assert (result.images[1] - photo[1]).abs().max() > 0.3
    assert result.faces_restored == [0, 1]


def test_alpha_channel_is_kept():
    photo = torch.cat([smooth_photo(), torch.full((1, 192, 256, 1), 0.5)], dim=-1)
    result = restore_faces(photo, detect=fixed_detector([[face_at(0.25, 0.0, 60.0, 30.0)]]),
                           restore=lambda f: torch.zeros_like(f), parse=full_mask, face_size=512)
    assert result.images.shape == (1, 192, 256, 4)
    assert torch.equal(result.images[..., 3], photo[..., 3])


# -- batching ------------------------------------------------------------------------------------------

def test_faces_of_the_whole_batch_are_restored_together_in_chunks():
    photo = smooth_photo(batch=2)
    faces = [[face_at(0.2, 0.0, 10.0, 20.0), face_at(0.2, 5.0, 130.0, 40.0)],
             [face_at(0.2, -5.0, 30.0, 10.0), face_at(0.2, 0.0, 140.0, 60.0)]]
    seen, progress = [], []

    def restore(x):
        seen.append(x.shape[0])
        return x

    chunking = Chunking(chunk_size=3, on_progress=lambda done, total: progress.append((done, total)))
    result = restore_faces(photo, detect=fixed_detector(faces), restore=restore, parse=full_mask, face_size=512,
                           chunking=chunking)
    assert seen == [3, 1]
    assert result.faces_restored == [2, 2]
    assert progress[-1] == (6, 6), "progress counts detection per image, then faces"
    seen.clear()
    restore_faces(photo, detect=fixed_detector(faces), restore=restore, parse=full_mask, face_size=512,
                  chunking=Chunking(chunk_size=8))
    assert seen == [4]


def test_out_of_memory_halves_the_chunk_and_gives_the_same_result():
    photo = smooth_photo(batch=2)
    faces = [[face_at(0.2, 0.0, 10.0, 20.0), face_at(0.2, 5.0, 130.0, 40.0)], [face_at(0.2, -5.0, 30.0, 10.0)]]
    sizes, ooms = [], []

    def fragile(x):
        sizes.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 1 - x

    result = restore_faces(photo, detect=fixed_detector(faces), restore=fragile, parse=full_mask, face_size=512,
                           chunking=Chunking(chunk_size=4, on_oom=ooms.append))
    assert sizes == [3, 1, 1, 1] and ooms == [1] and result.chunk_size == 1
    reference = restore_faces(photo, detect=fixed_detector(faces), restore=lambda x: 1 - x, parse=full_mask,
                              face_size=512, chunking=Chunking(chunk_size=1))
    assert torch.equal(result.images, reference.images)


def test_interrupt_between_chunks_stops_the_work():
    class Stop(Exception):
        pass

    photo = smooth_photo()
    faces = [[face_at(0.2, 0.0, 10.0, 20.0), face_at(0.2, 0.0, 130.0, 40.0)]]
    calls = []

    def before():
        calls.append(1)
        if len(calls) > 2:  # after detection (1) and the first chunk (2)
            raise Stop

    restored = []
    with pytest.raises(Stop):
        restore_faces(photo, detect=fixed_detector(faces), restore=lambda x: restored.append(1) or x,
                      parse=full_mask, face_size=512, chunking=Chunking(chunk_size=1, before_chunk=before))
    assert restored == [1]


# -- options -------------------------------------------------------------------------------------------

def test_only_the_largest_face_is_restored_when_asked():
    photo = smooth_photo()
    small, big = face_at(0.15, 0.0, 10.0, 20.0), face_at(0.25, 0.0, 120.0, 30.0)
    result = restore_faces(photo, detect=fixed_detector([[small, big]]), restore=identity, parse=full_mask,
                           face_size=512, options=FaceOptions(only_largest_face=True))
    assert result.faces_restored == [1]
    assert result.masks[0][interior(big, 512, 192, 256)].min() > 0.99
    assert result.masks[0][interior(small, 512, 192, 256) & ~interior(big, 512, 192, 256, margin=-8)].max() == 0


def test_faces_under_the_threshold_are_ignored():
    photo = smooth_photo()
    weak = face_at(0.25, 0.0, 60.0, 30.0, score=0.8)
    detect = fixed_detector([[weak]])
    result = restore_faces(photo, detect=detect, restore=identity, parse=full_mask, face_size=512,
                           options=FaceOptions(detection_threshold=0.85))
    assert detect.calls == [0.85]
    assert result.faces_restored == [0] and torch.equal(result.images, photo)


def checkerboard(faces: torch.Tensor) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(faces.shape[-2]), torch.arange(faces.shape[-1]), indexing="ij")
    return ((xx + yy) % 2).float().expand_as(faces).clone()


def test_small_faces_are_smoothed_like_gpen_or_skipped():
    photo = smooth_photo(height=320, width=320)
    face = face_at(1.0, 0.0, 30.0, 40.0, size=256)  # native scale: the crop maps 1:1 onto the image
    face = DetectedFace((100.0, 100.0, 180.0, 190.0), face.score, face.landmarks)  # an 80 px box: "small"
    inside = interior(face, 256, 320, 320, margin=2)

    def run(**options):
        return restore_faces(photo, detect=fixed_detector([[face]]), restore=checkerboard, parse=full_mask,
                             face_size=256, options=FaceOptions(**options))

    sharp = run(small_face_size=0).images[0]
    assert sharp[inside].std() > 0.45, "the checkerboard comes through unsmoothed"
    smoothed = run().images[0]
    torch.testing.assert_close(smoothed[inside], torch.full_like(smoothed[inside], 0.5), atol=1e-4, rtol=0)
    skipped = run(restore_small_faces=False)
    assert torch.equal(skipped.images, photo) and skipped.faces_restored == [0]
    assert skipped.notes() == ["the image: 0 face(s) restored, 1 face(s) smaller than the small-face size left "
                               "untouched"]


def test_smooth_is_the_121_filter():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 16.0
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
    assert torch.equal(smooth(x)[0, 0, 1:4, 1:4], expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_alpha_blends_restored_with_original(alpha):
    photo = smooth_photo(height=300, width=300)
    face = face_at(1.0, 0.0, 20.0, 30.0, size=256)
    result = restore_faces(photo, detect=fixed_detector([[face]]), restore=lambda f: torch.zeros_like(f),
                           parse=full_mask, face_size=256, options=FaceOptions(alpha=alpha, small_face_size=0))
    inside = interior(face, 256, 300, 300, margin=1)
    torch.testing.assert_close(result.images[0][inside], (1 - alpha) * photo[0][inside], atol=1e-5, rtol=0)


def test_where_faces_overlap_the_larger_mask_wins():
    photo = smooth_photo(height=300, width=300)
    a = face_at(1.0, 0.0, 10.0, 20.0, size=256)
    b = face_at(1.0, 0.0, 40.0, 30.0, size=256)
    colours = iter([0.2, 0.9])

    def restore(x):
        return torch.cat([torch.full_like(x[:1], next(colours)) for _ in range(x.shape[0])])

    def masks(x):  # face A: 0.6 everywhere; face B: 0.9 on its left half, 0.3 on its right half
        m = torch.full((x.shape[0], 256, 256), 0.6)
        m[1, :, :128], m[1, :, 128:] = 0.9, 0.3
        return m

    result = restore_faces(photo, detect=fixed_detector([[a, b]]), restore=restore, parse=masks, face_size=256,
                           options=FaceOptions(small_face_size=0), chunking=Chunking(chunk_size=2))
    both = interior(a, 256, 300, 300, 2) & interior(b, 256, 300, 300, 2)
    yy, xx = np.mgrid[0:300, 0:300]
    crop_x = apply_affine(alignment_matrix(b.landmarks, 256), np.stack([xx.ravel(), yy.ravel()], 1))[:, 0]
    crop_x = torch.from_numpy(crop_x.reshape(300, 300))
    left_of_b, right_of_b = both & (crop_x < 126), both & (crop_x > 130)
    assert left_of_b.sum() > 1000 and right_of_b.sum() > 1000
    out, m = result.images[0], result.masks[0]
    torch.testing.assert_close(m[left_of_b], torch.full_like(m[left_of_b], 0.9), atol=1e-5, rtol=0)
    torch.testing.assert_close(m[right_of_b], torch.full_like(m[right_of_b], 0.6), atol=1e-5, rtol=0)
    expect_left = photo[0][left_of_b] * 0.1 + 0.9 * 0.9
    expect_right = photo[0][right_of_b] * 0.4 + 0.2 * 0.6
    torch.testing.assert_close(out[left_of_b], expect_left, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[right_of_b], expect_right, atol=1e-5, rtol=0)


def test_a_face_with_degenerate_landmarks_is_ignored_not_fatal():
    photo = smooth_photo()
    broken = DetectedFace((10.0, 10.0, 90.0, 90.0), 0.99, np.full((5, 2), 50.0))
    good = face_at(0.25, 0.0, 120.0, 30.0)
    result = restore_faces(photo, detect=fixed_detector([[broken, good]]), restore=identity, parse=full_mask,
                           face_size=512)
    assert result.faces_restored == [1]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        FaceOptions(alpha=1.5)
    with pytest.raises(ValueError, match="detection_threshold"):
        FaceOptions(detection_threshold=0.0)


# -- helper networks -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fabricated_detector() -> FaceDetector:
    return FaceDetector(build_detector_network(detector_state_dict(), "detection_Resnet50_Final.pth"))


def test_real_retinaface_network_finds_the_fabricated_face(fabricated_detector):
    image = bright_patch_image(256, 256, cell=(2, 5))[0]
    faces = fabricated_detector(image, 0.9)
    assert len(faces) == 1
    face = faces[0]
    centre = np.array([5.5 * 32, 2.5 * 32])
    np.testing.assert_allclose(face.box, [*(centre - FAKE_FACE_BOX / 2), *(centre + FAKE_FACE_BOX / 2)], atol=1e-3)
    np.testing.assert_allclose(face.landmarks, centre + fake_landmark_offsets().numpy(), atol=1e-3)
    assert face.score > 0.99
    dark = bright_patch_image(256, 256, cell=(2, 5), patch=0)[0]
    assert fabricated_detector(dark, 0.9) == []


def test_a_one_channel_photo_goes_through_the_real_detector(fabricated_detector):
    gray = bright_patch_image(256, 256, cell=(2, 5))[..., :1].contiguous()
    result = restore_faces(gray, detect=fabricated_detector, restore=lambda f: f * 0.5, parse=full_mask,
                           face_size=256)
    assert result.faces_restored == [1] and result.images.shape == (1, 256, 256, 1)
    assert (result.images - gray).abs().max() > 0.1


def test_detector_rejects_files_of_other_networks():
    with pytest.raises(ValueError, match=r"parsing_parsenet\.pth is not a RetinaFace ResNet-50 detector"):
        build_detector_network({"conv.weight": torch.zeros(1)}, "parsing_parsenet.pth")


class RecordingRetina(torch.nn.Module):
    """Stands in for RetinaFace: one confident prediction on the last anchor, records what it was fed."""

    cfg = {"min_sizes": [[16, 32], [64, 128], [256, 512]], "steps": [8, 16, 32], "variance": [0.1, 0.2]}

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x)
        h, w = x.shape[-2:]
        n = sum(math.ceil(h / s) * math.ceil(w / s) * 2 for s in (8, 16, 32))
        conf = torch.zeros(1, n, 2)
        conf[..., 0] = 1.0
        conf[0, -1] = torch.tensor([0.0, 1.0])
        return torch.zeros(1, n, 4), conf, torch.zeros(1, n, 10)


@pytest.mark.parametrize(("height", "width", "scale"), [(400, 300, 1.0), (2000, 1600, 0.5)])
def test_detection_input_and_gpen_downscale_rule(height, width, scale):
    net = RecordingRetina()
    image = torch.zeros(height, width, 3)
    image[..., 0], image[..., 1], image[..., 2] = 0.2, 0.4, 0.6  # R, G, B
    faces = FaceDetector(net)(image, 0.9)
    fed = net.inputs[0]
    assert tuple(fed.shape[-2:]) == (round(height * scale), round(width * scale))
    torch.testing.assert_close(fed[0, :, 5, 5], torch.tensor([0.6 * 255 - 104, 0.4 * 255 - 117, 0.2 * 255 - 123]))
    # the last anchor: the bottom-right stride-32 cell, 512 px prior, mapped back to original pixels
    dh, dw = fed.shape[-2:]
    cx = (math.ceil(dw / 32) - 0.5) * 32 / scale
    cy = (math.ceil(dh / 32) - 0.5) * 32 / scale
    half = 512 / 2 / scale
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, [cx - half, cy - half, cx + half, cy + half], rtol=1e-5)
    np.testing.assert_allclose(faces[0].landmarks, np.tile([cx, cy], (5, 1)), rtol=1e-5)


class DesignedParseNet(torch.nn.Module):
    """Stands in for ParseNet at 512: labels the left half skin (1), the top-right hat (14), the rest cloth (18)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        logits = torch.zeros(x.shape[0], 19, 512, 512)
        logits[:, 1, :, :256] = 1.0
        logits[:, 14, :256, 256:] = 1.0
        logits[:, 18, 256:, 256:] = 1.0
        return logits, x


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_parse_mask_keeps_face_classes_clears_the_border_and_blurs(size):
    net = DesignedParseNet()
    faces = torch.rand(2, 3, size, size)
    masks = FaceParser(net)(faces)
    assert masks.shape == (2, size, size)
    fed = net.seen[0]
    assert fed.shape == (2, 3, 512, 512) and fed.min() >= -1 and fed.max() <= 1, "ParseNet sees 512 px in [-1, 1]"
    f = size / 512
    assert masks[:, int(256 * f), int(100 * f)].min() > 0.999, "skin"
    assert masks[:, int(100 * f), int(400 * f)].max() < 1e-3, "hat"
    assert masks[:, int(400 * f), int(400 * f)].max() < 1e-3, "cloth"
    assert masks[:, int(256 * f), :int((BORDER - 16) * f)].max() < 0.01, "border cleared (then blurred)"
    edge = masks[0, int(256 * f), int(236 * f):int(276 * f)]
    assert (edge[:-1] >= edge[1:] - 1e-6).all() and edge[0] > 0.9 and edge[-1] < 0.1, "a soft falling edge"


def test_gaussian_taps_match_opencv_kernel():
    cv2 = pytest.importorskip("cv2")
    np.testing.assert_allclose(gaussian_taps(101, 4.0).numpy(), cv2.getGaussianKernel(101, 4.0)[:, 0], atol=1e-7)


# -- aligned faces -------------------------------------------------------------------------------------

def test_aligned_crops_are_resized_to_the_model_and_restored_in_chunks():
    seen = []

    def restore(x):
        seen.append(tuple(x.shape))
        return 1 - x

    crops = torch.cat([smooth_photo(batch=3, height=100, width=80), torch.ones(3, 100, 80, 1)], dim=-1)
    out = restore_aligned(crops, restore, 256, chunking=Chunking(chunk_size=2))
    assert seen == [(2, 3, 256, 256), (1, 3, 256, 256)]
    assert out.shape == (3, 256, 256, 4)
    assert torch.equal(out[..., 3], torch.ones(3, 256, 256))
    resized = torch.nn.functional.interpolate(crops[..., :3].permute(0, 3, 1, 2), size=(256, 256), mode="bilinear",
                                              align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(out[..., :3], 1 - resized, atol=1e-5, rtol=0)


def test_generator_restorer_maps_between_image_and_model_ranges():
    class Shift(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.seen = None

        def forward(self, x):
            self.seen = x
            return x + 0.5  # +0.25 in image units, clamped at 1

    net = Shift()
    faces = torch.tensor([0.0, 0.5, 0.9]).view(1, 3, 1, 1)
    out = GeneratorRestorer(net)(faces)
    torch.testing.assert_close(net.seen.flatten(), torch.tensor([-1.0, 0.0, 0.8]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.25, 0.75, 1.0]))


def test_inverse_of_alignment_maps_template_back_onto_landmarks():
    face = face_at(0.3, 15.0, 40.0, 20.0)
    back = apply_affine(invert_affine(alignment_matrix(face.landmarks, 512)), reference_points(512))
    np.testing.assert_allclose(back, face.landmarks, atol=1e-9)
