"""GPEN's 5-point face template, similarity alignment and affine resampling in torch.

The template is the 96×112 five-landmark reference (eyes, nose tip, mouth corners) made square and
padded by 25 % on each side, then scaled to the model size — GPEN's own framing, about 15 % looser
than the FFHQ template other face restorers use. Transforms are 2×3 matrices mapping source pixel
coordinates to destination pixel coordinates (OpenCV's convention, pixel centres at integers).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf

# Eye centres, nose tip, mouth corners in a 96×112 (w×h) crop.
TEMPLATE_96X112 = np.array(
    [[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
     [33.54930115, 92.3655014], [62.72990036, 92.20410156]],
    dtype=np.float64,
)
INNER_PADDING = 0.25


def reference_points(size: int) -> np.ndarray:
    """Where the five landmarks land in a ``size``×``size`` GPEN crop (5×2, x/y)."""
    points = TEMPLATE_96X112.copy()
    points[:, 0] += (112 - 96) / 2  # square 112×112 crop, face centred horizontally
    square = 112.0
    pad = square * INNER_PADDING  # per side
    points += pad
    return points * (size / (square + 2 * pad))


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` points onto ``dst``.

    Umeyama's closed form; returns the 2×3 matrix ``M`` with ``dst ≈ M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching N×2 point sets (N ≥ 2), got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("the source landmarks coincide; no similarity transform exists")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Exact inverse of a 2×3 affine matrix."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def warp_affine(src: torch.Tensor, src_to_dst: np.ndarray | torch.Tensor, out_hw: tuple[int, int],
                offset: tuple[int, int] = (0, 0), border: str = "zeros") -> torch.Tensor:
    """Bilinear resampling of ``src`` (N,C,H,W) through the affine maps ``src_to_dst`` (N,2,3 or 2,3).

    Output pixel (i, j) is destination point ``(offset_x + j, offset_y + i)``. Samples outside the
    source read as 0 with ``border="zeros"`` (OpenCV's default constant border: warped masks fade to 0
    there) or repeat the edge pixel with ``border="border"``.
    """
    n, _, h_src, w_src = src.shape
    m = torch.as_tensor(np.asarray(src_to_dst, dtype=np.float64)).reshape(-1, 2, 3)
    full = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=m.dtype).expand(m.shape[0], 1, 3)], dim=1)
    dst_to_src = torch.linalg.inv(full)[:, :2]  # float64 on CPU: exact enough for any image size
    if dst_to_src.shape[0] == 1 and n > 1:
        dst_to_src = dst_to_src.expand(n, 2, 3)
    # fold the pixel → normalised-coordinate conversion into the matrix, then let affine_grid-style math run
    h_out, w_out = out_hw
    to_norm = torch.tensor([[2.0 / w_src, 0.0, 1.0 / w_src - 1.0], [0.0, 2.0 / h_src, 1.0 / h_src - 1.0]],
                           dtype=torch.float64)
    norm = to_norm[:, :2] @ dst_to_src  # (N,2,3): x_norm = A @ [x_dst, y_dst, 1]
    norm[:, :, 2] += to_norm[:, 2]
    a = norm.to(device=src.device, dtype=torch.float32)[:, None, None]  # (N,1,1,2,3)
    ys = torch.arange(h_out, device=src.device, dtype=torch.float32) + offset[1]
    xs = torch.arange(w_out, device=src.device, dtype=torch.float32) + offset[0]
    grid = xs[None, None, :, None] * a[..., 0] + ys[None, :, None, None] * a[..., 1] + a[..., 2]  # (N,H,W,2)
    grid = grid.to(src.dtype)
    return nnf.grid_sample(src, grid, mode="bilinear", padding_mode=border, align_corners=False)


def footprint(src_to_dst: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)`` of the destination that the warped source rectangle can touch."""
    h, w = src_hw
    corners = np.array([[-1, -1], [w, -1], [-1, h], [w, h]], dtype=np.float64)
    mapped = apply_affine(src_to_dst, corners)
    x0 = min(max(int(np.floor(mapped[:, 0].min())), 0), dst_hw[1])
    y0 = min(max(int(np.floor(mapped[:, 1].min())), 0), dst_hw[0])
    x1 = min(int(np.ceil(mapped[:, 0].max())) + 1, dst_hw[1])
    y1 = min(int(np.ceil(mapped[:, 1].max())) + 1, dst_hw[0])
    return x0, y0, max(x1, x0), max(y1, y0)
