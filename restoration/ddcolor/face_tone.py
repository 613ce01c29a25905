"""One consistent skin tone per face, so colorized portraits get no blue cheeks or red noses.

Given a face mask (for example the GPEN node's mask output), each connected face region gets a
single tone: the robust (outlier-trimmed) mean of its predicted ab, kept inside a plausible skin
range so a face that came out blue or green as a whole is pulled back too. ab inside the mask is
then moved towards that tone (``FACE_TONE_STRENGTH``, so lips and cheeks keep a little of their
own colour), and the blend is feathered so the face edge shows no seam. This runs on the model's
low-resolution ab, before upsampling, where it is cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

FACE_TONE_STRENGTH = 0.85  # how far ab inside a face moves towards the face's tone (0..1)
# A generous box around measured skin colours of all complexions in CIE Lab (a*, b*).
SKIN_A_RANGE = (4.0, 28.0)
SKIN_B_RANGE = (6.0, 34.0)
_LABEL_SIDE = 128  # faces are labelled at this resolution: plenty to separate faces, and fast
_FEATHER_FRACTION = 0.01  # feather sigma as a fraction of the image's long side


def harmonise_face_tone(ab: torch.Tensor, mask: torch.Tensor, *, strength: float = FACE_TONE_STRENGTH) -> torch.Tensor:
    """ab (B, 2, h, w) with each face of ``mask`` (B, 1, h, w in [0, 1]) moved towards one tone."""
    if not bool((mask > 0.5).any()):
        return ab
    mask = mask.to(ab.dtype)
    labels = _face_regions(mask > 0.5)
    tone = _region_tones(ab, mask, labels)
    # cover the feathered rim outside the hard mask with the nearest face's label
    sigma = max(1.0, _FEATHER_FRACTION * max(ab.shape[-2:]))
    reach = int(round(2 * sigma))
    grown = F.max_pool2d(labels.float(), 2 * reach + 1, stride=1, padding=reach).long()
    labels = torch.where(labels > 0, labels, grown)
    tone_map = tone[labels.squeeze(1)].permute(0, 3, 1, 2)
    weight = strength * _gaussian_blur(mask, sigma) * (labels > 0)
    return ab + weight * (tone_map - ab)


def _face_regions(inside: torch.Tensor) -> torch.Tensor:
    """Connected regions of ``inside`` (B,1,h,w bool) -> labels (B,1,h,w long), 0 outside, unique per batch."""
    b, _, h, w = inside.shape
    scale = min(1.0, _LABEL_SIDE / max(h, w))
    small_size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(inside.float(), size=small_size, mode="nearest") > 0.5
    ids = torch.arange(1, small[0, 0].numel() + 1, device=inside.device, dtype=torch.float32)
    labels = ids.view(1, 1, *small_size).expand(b, 1, *small_size) * small
    for _ in range(small_size[0] * small_size[1]):  # label propagation; ends long before this bound
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * small
        if torch.equal(grown, labels):
            break
        labels = grown
    labels = F.interpolate(labels, size=(h, w), mode="nearest") * inside
    offsets = torch.arange(b, device=inside.device).view(b, 1, 1, 1) * (small[0, 0].numel() + 1)
    return torch.where(labels > 0, labels.long() + offsets, torch.zeros_like(labels, dtype=torch.long))


def _region_tones(ab: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A table ``tone[label] -> (a, b)``: trimmed weighted mean per region, clamped to skin range."""
    flat_labels = labels.flatten()
    size = int(flat_labels.max().item()) + 1
    weights = (mask * (labels > 0)).flatten()
    values = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()

    def weighted_mean(w: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(size, device=ab.device).index_add_(0, flat_labels, w)
        sums = torch.zeros(size, 2, device=ab.device).index_add_(0, flat_labels, values * w[:, None])
        return sums / total.clamp_min(1e-6)[:, None]

    mean = weighted_mean(weights)
    distance = (values - mean[flat_labels]).norm(dim=1)
    total = torch.zeros(size, device=ab.device).index_add_(0, flat_labels, weights)
    spread = torch.zeros(size, device=ab.device).index_add_(0, flat_labels, weights * distance**2)
    spread = (spread / total.clamp_min(1e-6)).sqrt()
    inliers = weights * (distance <= 2.0 * spread[flat_labels] + 1.0)
    tone = weighted_mean(inliers)
    tone[:, 0].clamp_(*SKIN_A_RANGE)
    tone[:, 1].clamp_(*SKIN_B_RANGE)
    tone[0] = 0.0
    return tone.to(ab.dtype)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    # zero padding, normalised by the blurred "ones" so borders do not darken
    ones = torch.ones_like(x[:, :1])
    out, norm = x, ones
    for shape in ((1, 1, 1, -1), (1, 1, -1, 1)):
        k = kernel.view(shape)
        pad = (radius, radius, 0, 0) if shape[-1] == -1 else (0, 0, radius, radius)
        out = F.conv2d(F.pad(out, pad), k.expand(c, 1, *k.shape[-2:]), groups=c)
        norm = F.conv2d(F.pad(norm, pad), k)
    return out / norm
