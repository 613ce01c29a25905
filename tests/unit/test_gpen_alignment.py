"""GPEN's face template, the similarity alignment and the affine resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from restoration_governor.restoration.gpen.alignment import (
    apply_affine,
    estimate_similarity,
    footprint,
    invert_affine,
    reference_points,
    warp_affine,
)
from restoration_governor.restoration.gpen.pipeline import alignment_matrix

# GPEN's reference points for a 512 crop, as documented (models.md §2.3), and the FFHQ template others use.
GPEN_512 = np.array([[202.04, 242.88], [309.43, 242.29], [256.08, 303.96], [211.96, 366.83], [300.89, 366.34]])
FFHQ_512 = np.array([[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41], [313.09, 371.15]])


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize(("size", "factor"), [(512, 1.0), (256, 0.5), (1024, 2.0), (2048, 4.0)])
def test_reference_points_are_gpens_template(size, factor):
    np.testing.assert_allclose(reference_points(size), GPEN_512 * factor, atol=0.006 * factor)


def test_gpen_frames_faces_smaller_than_the_ffhq_template():
    eye_gpen = np.linalg.norm(GPEN_512[1] - GPEN_512[0])
    eye_ffhq = np.linalg.norm(FFHQ_512[1] - FFHQ_512[0])
    assert eye_gpen == pytest.approx(107.4, abs=0.1)
    assert eye_gpen / eye_ffhq == pytest.approx(0.853, abs=0.002)
    # mapping a face framed the FFHQ way onto GPEN's framing shrinks it (least-squares scale ≈ 0.89)
    linear = estimate_similarity(FFHQ_512, reference_points(512))[:, :2]
    assert 0.8 < math.sqrt(np.linalg.det(linear)) < 0.9


def test_alignment_matrix_inverts_a_known_placement_exactly():
    # A face placed in the photo by a known similarity (crop → photo): scaled to 0.25, rotated 30°, moved.
    placement = similarity(0.25, 30.0, 400.0, 150.0)
    landmarks = apply_affine(placement, reference_points(512))
    m = alignment_matrix(landmarks, 512)
    # Hand-computed inverse: rotate by −30°, scale by 4, translate by −R⁻¹t·4.
    a = math.radians(-30.0)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * 4.0
    expected = np.hstack([r, (-r @ np.array([400.0, 150.0]))[:, None]])
    np.testing.assert_allclose(m, expected, atol=1e-9)
    np.testing.assert_allclose(apply_affine(m, landmarks), reference_points(512), atol=1e-9)


def test_alignment_of_noisy_landmarks_is_the_least_squares_fit():
    rng = np.random.default_rng(0)
    placement = similarity(0.4, -12.0, 80.0, 60.0)
    landmarks = apply_affine(placement, reference_points(256)) + rng.normal(0, 1.0, (5, 2))
    m = alignment_matrix(landmarks, 256)
    residual = np.linalg.norm(apply_affine(m, landmarks) - reference_points(256), axis=1)
    assert residual.max() < 8.0
    # No other similarity fits better: perturbing the solution only increases the squared error.
    base = (residual**2).sum()
    for delta in np.eye(4) * 1e-3:
        s = math.hypot(m[0, 0], m[1, 0]) * (1 + delta[0])
        ang = math.atan2(m[1, 0], m[0, 0]) + delta[1]
        moved = similarity(s, math.degrees(ang), m[0, 2] + delta[2], m[1, 2] + delta[3])
        assert ((apply_affine(moved, landmarks) - reference_points(256)) ** 2).sum() >= base - 1e-9


def test_mirrored_landmarks_still_give_a_proper_rotation():
    mirrored = reference_points(512) * np.array([-1.0, 1.0]) + np.array([600.0, 0.0])
    m = estimate_similarity(mirrored, reference_points(512))
    assert np.linalg.det(m[:, :2]) > 0, "a similarity never reflects"


def test_coincident_landmarks_are_rejected():
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), reference_points(512))


def test_invert_affine_is_exact():
    m = similarity(1.7, 33.0, -12.0, 40.0)
    np.testing.assert_allclose(invert_affine(invert_affine(m)), m, atol=1e-12)
    p = np.array([[3.0, 4.0], [100.0, -7.0]])
    np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, p)), p, atol=1e-9)


def test_warp_follows_opencv_pixel_conventions():
    src = torch.arange(6 * 8, dtype=torch.float32).reshape(1, 1, 6, 8)
    # pure translation by (+2, +1): dst(x, y) = src(x − 2, y − 1), zeros where that falls outside
    out = warp_affine(src, np.array([[1.0, 0, 2], [0, 1.0, 1]]), (6, 8))
    torch.testing.assert_close(out[0, 0, 1:, 2:], src[0, 0, :-1, :-2], atol=1e-3, rtol=0)
    assert out[0, 0, 0].abs().max() < 1e-5 and out[0, 0, :, :2].abs().max() < 1e-5
    # half-pixel shift: the average of neighbours (bilinear)
    half = warp_affine(src, np.array([[1.0, 0, 0.5], [0, 1.0, 0]]), (6, 8))
    torch.testing.assert_close(half[0, 0, :, 1:], (src[0, 0, :, 1:] + src[0, 0, :, :-1]) / 2, atol=1e-3, rtol=0)
    # ×2 magnification: destination pixel 2k lands on source pixel k
    up = warp_affine(src, np.array([[2.0, 0, 0], [0, 2.0, 0]]), (12, 16))
    torch.testing.assert_close(up[0, 0, ::2, ::2][:5, :7], src[0, 0, :5, :7], atol=1e-3, rtol=0)


def test_warp_with_offset_renders_a_sub_rectangle():
    src = torch.rand(2, 3, 20, 30)
    m = similarity(0.8, 10.0, 5.0, 3.0)
    full = warp_affine(src, m, (25, 35))
    part = warp_affine(src, m, (10, 12), offset=(7, 9))
    torch.testing.assert_close(part, full[..., 9:19, 7:19], atol=1e-5, rtol=0)


def test_warp_moves_landmark_blobs_onto_the_template():
    """Dots drawn at the landmarks of a rotated face end up at the template points in the crop."""
    placement = similarity(0.3, 25.0, 90.0, 40.0)
    landmarks = apply_affine(placement, reference_points(512))
    yy, xx = torch.meshgrid(torch.arange(240.0), torch.arange(260.0), indexing="ij")
    img = torch.zeros(1, 1, 240, 260)
    for x, y in landmarks:
        img[0, 0] += torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    crop = warp_affine(img, alignment_matrix(landmarks, 512), (512, 512))[0, 0]
    for x, y in reference_points(512):
        xi, yi = round(x), round(y)
        window = crop[yi - 12:yi + 13, xi - 12:xi + 13]
        peak = divmod(int(window.argmax()), window.shape[1])
        assert abs(peak[0] - 12) <= 1 and abs(peak[1] - 12) <= 1


def test_footprint_bounds_the_warped_crop():
    m = similarity(0.25, 30.0, 100.0, 50.0)  # crop → image
    x0, y0, x1, y1 = footprint(m, (512, 512), (400, 400))
    corners = apply_affine(m, np.array([[0, 0], [511, 0], [0, 511], [511, 511]], dtype=float))
    assert x0 <= corners[:, 0].min() and x1 >= corners[:, 0].max()
    assert y0 <= corners[:, 1].min() and y1 >= corners[:, 1].max()
    assert (x1 - x0) < 200 and (y1 - y0) < 200
    x0, y0, x1, y1 = footprint(similarity(1.0, 0.0, 1000.0, 1000.0), (512, 512), (400, 400))
    assert x1 <= x0 and y1 <= y0, "a crop that lands outside the image touches nothing"
