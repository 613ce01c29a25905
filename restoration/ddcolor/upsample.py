"""Bringing the model's low-resolution ab back to the photo's resolution.

DDColor predicts ab at its input size (512 or 1024 px) and the pipeline keeps the photo's own L,
so ab must be resized to the photo. The official pipeline uses nearest neighbour, which leaves
blocky colour steps that leak across edges when the photo is larger than the model input.

* ``nearest``  - the official behaviour (bit-for-bit the same call).
* ``bilinear`` - smooth, but colour still bleeds a few pixels across edges.
* ``guided``   - edge-aware: a fast guided filter (He & Sun 2015) fits ab as a local linear function
  of L at the model resolution and evaluates that fit on the full-resolution L, so colour edges
  snap to the photo's luminance edges (brick joints, window frames).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812

AbUpsample = Literal["nearest", "bilinear", "guided"]
AB_UPSAMPLE_METHODS: tuple[str, ...] = ("nearest", "bilinear", "guided")

# Guided-filter parameters, chosen on the synthetic edge chart (see docs/ddcolor.md).
GUIDED_RADIUS = 1  # window radius in model-resolution pixels
GUIDED_EPS = 1e-4  # regularisation, in units of (L/100)^2: lower follows L edges more closely


def upsample_ab(
    ab: torch.Tensor,
    size: tuple[int, int],
    method: str,
    *,
    guide_small: torch.Tensor | None = None,
    guide_full: torch.Tensor | None = None,
) -> torch.Tensor:
    """Resize ab (B, 2, h, w) to ``size``; ``guided`` needs L at both resolutions (B, 1, ., .)."""
    if method == "nearest":
        return F.interpolate(ab, size=size)  # the official call: mode='nearest'
    if method == "bilinear":
        return _bilinear(ab, size)
    if method == "guided":
        if guide_small is None or guide_full is None:
            raise ValueError("guided ab upsampling needs the L channel at model and at full resolution")
        return guided_upsample(ab, guide_small / 100.0, guide_full / 100.0)
    raise ValueError(f"unknown ab_upsample {method!r}; expected one of {', '.join(AB_UPSAMPLE_METHODS)}")


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_upsample(
    p: torch.Tensor,
    guide_small: torch.Tensor,
    guide_full: torch.Tensor,
    *,
    radius: int = GUIDED_RADIUS,
    eps: float = GUIDED_EPS,
) -> torch.Tensor:
    """Fast guided upsampling of ``p`` (B, C, h, w) with guide ``I`` at low (h, w) and full resolution."""
    radius = max(1, min(radius, (min(p.shape[-2:]) - 1) // 2)) if min(p.shape[-2:]) >= 3 else 0
    if radius == 0:
        return _bilinear(p, tuple(guide_full.shape[-2:]))
    mean_i = _box(guide_small, radius)
    mean_p = _box(p, radius)
    cov_ip = _box(guide_small * p, radius) - mean_i * mean_p
    var_i = _box(guide_small * guide_small, radius) - mean_i * mean_i
    a = cov_ip / (var_i.clamp_min(0.0) + eps)
    b = mean_p - a * mean_i
    size = tuple(guide_full.shape[-2:])
    mean_a = _bilinear(_box(a, radius), size)
    mean_b = _bilinear(_box(b, radius), size)
    return mean_a * guide_full + mean_b
