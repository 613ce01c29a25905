"""The torch Lab conversion reproduces OpenCV's float32 cvtColor, which the official pipeline uses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from restoration_governor.restoration.ddcolor import lab

L_QUANTUM = 100 / 16384  # OpenCV's float RGB->Lab returns L on this grid


def _as_planes(rgb: np.ndarray) -> torch.Tensor:
    """(N, 3) RGB -> (3, 1, N) tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb.T)).reshape(3, 1, -1)


@pytest.mark.parametrize("kind", ["random float", "8-bit", "gray ramp"])
def test_lightness_matches_opencv(kind):
    rng = np.random.default_rng(0)
    if kind == "random float":
        rgb = rng.random((200_000, 3), dtype=np.float32)
    elif kind == "8-bit":
        rgb = (rng.integers(0, 256, (200_000, 3)) / 255).astype(np.float32)
    else:
        ramp = (np.arange(256) / 255).astype(np.float32)
        rgb = np.stack([ramp] * 3, axis=-1)
    expected = cv2.cvtColor(rgb[None], cv2.COLOR_RGB2Lab)[0, :, 0]
    ours = lab.lightness(_as_planes(rgb))[0, 0].numpy()
    assert np.abs(ours - expected).max() <= L_QUANTUM + 1e-4
    if kind == "gray ramp":
        assert np.array_equal(ours, expected)


def test_lightness_table_is_opencvs():
    """At the grid points OpenCV's interpolation returns its table: compare the tables directly."""
    grid = (np.arange(33) / 32).astype(np.float32)
    blue, green, red = np.meshgrid(grid, grid, grid, indexing="ij")
    bgr = np.stack([blue, green, red], axis=-1).reshape(1, -1, 3)
    expected = np.rint(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)[0, :, 0] * 16384 / 100).astype(np.int64)
    ours = lab._lightness_table().reshape(-1).astype(np.int64)
    differs = np.abs(ours - expected)
    assert differs.max() <= 1 and (differs > 0).sum() <= 20  # float rounding of 16 of 35937 entries


def test_lab_to_rgb_matches_opencv_including_out_of_range_ab():
    rng = np.random.default_rng(1)
    n = 200_000
    lab_values = np.stack([rng.random(n) * 100, rng.random(n) * 360 - 180, rng.random(n) * 360 - 180], -1)
    lab_values = lab_values.astype(np.float32)
    expected = cv2.cvtColor(lab_values[None], cv2.COLOR_LAB2RGB)[0]
    ours = lab.lab_to_rgb(_as_planes(lab_values))[:, 0].numpy().T
    assert np.abs(ours - expected).max() < 2e-5


def test_gray_from_lightness_is_neutral_and_batched():
    big_l = torch.linspace(0, 100, 64).reshape(1, 1, 8, 8).repeat(2, 1, 1, 1)
    gray = lab.gray_from_lightness(big_l)
    assert gray.shape == (2, 3, 8, 8)
    assert (gray.amax(1) - gray.amin(1)).max() < 1e-3
    # OpenCV interpolates its table with 1/512 steps of input, so its own round trip is off by up to ~0.25 L
    assert torch.allclose(lab.lightness(gray), big_l, atol=0.3)
