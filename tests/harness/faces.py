"""Face-pipeline test helpers: smooth photos, detections placed by a known similarity, fake networks.

Detections are injected at the Python level (``fixed_detector``), so tests of the paste-back,
chunking and channel handling do not depend on a detector network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from restoration_governor.restoration.gpen.alignment import apply_affine, reference_points
from restoration_governor.restoration.gpen.detection import DetectedFace
from restoration_governor.restoration.gpen.pipeline import alignment_matrix


def smooth_photo(batch: int = 1, height: int = 192, width: int = 256, seed: int = 0) -> torch.Tensor:
    """Low-frequency colour image: bilinear resampling reproduces it closely."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    channels = []
    for _ in range(batch * 3):
        a, b, c = (torch.rand(3, generator=g) * 3 + 1).tolist()
        channels.append(0.5 + 0.35 * torch.sin(a * xs + b * ys + c) * torch.cos(b * xs - a * ys))
    return torch.stack(channels).reshape(batch, 3, height, width).permute(0, 2, 3, 1).contiguous()


def face_at(scale: float, degrees: float, tx: float, ty: float, size: int = 512, score: float = 0.99) -> DetectedFace:
    """A detection whose landmarks are GPEN's template for ``size`` placed by a known similarity."""
    a = math.radians(degrees)
    placement = np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                          [scale * math.sin(a), scale * math.cos(a), ty]])
    landmarks = apply_affine(placement, reference_points(size))
    centre = apply_affine(placement, np.array([[size / 2, size / 2]]))[0]
    half = 0.3 * size * scale  # a detector's box covers roughly the middle 60 % of a GPEN crop
    return DetectedFace((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half), score, landmarks)


def fixed_detector(per_image: list[list[DetectedFace]]):
    calls = []

    def detect(image: torch.Tensor, threshold: float):
        calls.append(threshold)
        return per_image[len(calls) - 1]

    detect.calls = calls
    return detect


def identity(faces: torch.Tensor) -> torch.Tensor:
    return faces.clone()


def full_mask(faces: torch.Tensor) -> torch.Tensor:
    return torch.ones(faces.shape[0], faces.shape[-2], faces.shape[-1])


def interior(face: DetectedFace, size: int, height: int, width: int, margin: int = 4) -> torch.Tensor:
    """Image pixels whose position in the crop lies at least ``margin`` px inside it."""
    to_crop = alignment_matrix(face.landmarks, size)
    yy, xx = np.mgrid[0:height, 0:width]
    pts = apply_affine(to_crop, np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(height, width, 2)
    inside = (pts >= margin).all(axis=-1) & (pts <= size - 1 - margin).all(axis=-1)
    return torch.from_numpy(inside)
