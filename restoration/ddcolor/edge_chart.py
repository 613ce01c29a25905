"""A synthetic building facade with known colours, to measure colour bleeding of ab upsampling.

The chart is a label map (sky, brick courses with mortar joints, windows with thin frames), each
label with its own L and ab, so the true colour of every pixel is known and every colour edge
coincides with a luminance edge, as on a real facade. The model's job is simulated by an ideal
predictor: the true ab resized to the model resolution exactly like the pipeline resizes the
photo. Each upsampling method then brings ab back to full resolution, and the error is measured
near edges (bleeding) and in flat areas (damage). Used by ``bench/ddcolor.py`` and the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from .upsample import AB_UPSAMPLE_METHODS, upsample_ab

# label: (L, a, b)
_PALETTE = {
    0: (78.0, -8.0, -32.0),  # sky
    1: (52.0, 32.0, 28.0),  # brick
    2: (82.0, 2.0, 8.0),  # mortar
    3: (22.0, -4.0, -18.0),  # window glass
    4: (92.0, 0.0, 0.0),  # white window frame
    5: (45.0, 38.0, 20.0),  # darker brick
}


def edge_chart(height: int = 960, width: int = 1440, grain: float = 0.0) -> dict[str, torch.Tensor]:
    """``{"L": (1,1,H,W), "ab": (1,2,H,W), "labels": (1,1,H,W)}`` of the facade.

    ``grain`` adds Gaussian film grain of that many L units (seeded) to L, not to the true ab.
    """
    y = torch.arange(height).view(-1, 1).expand(height, width)
    x = torch.arange(width).view(1, -1).expand(height, width)
    labels = torch.zeros(height, width, dtype=torch.long)
    roof = int(0.27 * height) + (x * 7 // 50)  # a slanted roof line: not aligned to any grid
    wall = y >= roof
    course = max(6, height // 27)
    brick = max(14, width // 13)
    mortar = max(2, course // 7)
    row = (y - roof) // course
    shifted = x + (row % 2) * (brick // 2)
    joint = (((y - roof) % course) < mortar) | ((shifted % brick) < mortar)
    labels[wall] = torch.where(((row + shifted // brick) % 3 == 0)[wall], 5, 1)
    labels[wall & joint] = 2
    frame = max(2, width // 400)
    for left, top, w, h in ((0.11, 0.42, 0.17, 0.33), (0.41, 0.47, 0.19, 0.29), (0.71, 0.40, 0.16, 0.37)):
        x0, y0 = int(left * width) + 3, int(top * height) + 1
        x1, y1 = x0 + int(w * width), y0 + int(h * height)
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        glass = (x >= x0 + frame) & (x < x1 - frame) & (y >= y0 + frame) & (y < y1 - frame)
        mullion = (x >= (x0 + x1) // 2 - frame // 2) & (x < (x0 + x1) // 2 + (frame + 1) // 2)
        labels[inside] = 4
        labels[glass & ~mullion] = 3
    palette = torch.tensor([_PALETTE[k] for k in sorted(_PALETTE)])
    lab = palette[labels].permute(2, 0, 1).unsqueeze(0)
    big_l = lab[:, :1]
    if grain > 0:
        noise = torch.randn(big_l.shape, generator=torch.Generator().manual_seed(5))
        big_l = (big_l + grain * noise).clamp(0.0, 100.0)
    return {"L": big_l, "ab": lab[:, 1:], "labels": labels.view(1, 1, height, width)}


def edge_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within ``width`` px of a label change (B,1,H,W bool)."""
    lab = labels.float()
    k = 2 * width + 1
    high = F.max_pool2d(lab, k, stride=1, padding=width)
    low = -F.max_pool2d(-lab, k, stride=1, padding=width)
    return high != low


def bleed_report(chart: dict[str, torch.Tensor], model_size: tuple[int, int]) -> dict[str, dict[str, float]]:
    """Mean ab error (Lab units) near edges and in flat areas for each upsampling method."""
    height, width = chart["L"].shape[-2:]
    resize = {"size": model_size, "mode": "bilinear", "align_corners": False}
    ab_small = F.interpolate(chart["ab"], **resize)
    l_small = F.interpolate(chart["L"], **resize)
    factor = max(height / model_size[0], width / model_size[1])
    band = edge_band(chart["labels"], max(1, round(factor)))
    report = {}
    for method in AB_UPSAMPLE_METHODS:
        ab = upsample_ab(ab_small, (height, width), method, guide_small=l_small, guide_full=chart["L"])
        error = (ab - chart["ab"]).norm(dim=1, keepdim=True)
        report[method] = {
            "bleed_near_edges": round(error[band].mean().item(), 3),
            "error_flat": round(error[~band].mean().item(), 3),
            "pixels_off_by_more_than_10": round((error > 10).float().mean().item(), 5),
        }
    return report
