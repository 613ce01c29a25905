"""sRGB <-> CIE Lab in torch, numerically matching OpenCV's float32 ``cvtColor``.

The official DDColor pipeline does its colour math with OpenCV on float32 images, and the model
is sensitive to its input: a gray level that is off by 0.002 moves predicted ab by up to ~2
units. A textbook Lab conversion is not close enough, because OpenCV computes float RGB->Lab
from a 33x33x33 lookup table of fixed-point Lab values with trilinear interpolation on a 14-bit
grid (so its L is quantised to 100/16384 and can be ~0.25 L off the exact formula), and
converts Lab->RGB with a natural cubic spline for the sRGB gamma. This module reproduces both
(checked against OpenCV in the unit tests), on any device and for whole batches.

Only what the pipeline needs is implemented: L of an RGB image, and Lab -> RGB.
Tensors are (..., 3, H, W) RGB in [0, 1] and (..., H, W) or (..., 1, H, W) planes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

# OpenCV's constants (sRGB D65 matrices, white point, thresholds).
_SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], dtype=np.float64
)
_XYZ_TO_SRGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]],
    dtype=np.float64,
)
_WHITE = np.array([0.950456, 1.0, 1.088754], dtype=np.float64)
_LIN_THRESHOLD = 216.0 / 24389.0  # (6/29)^3
_LIN_SLOPE = 841.0 / 108.0  # 7.787
_LIN_BIAS = 16.0 / 116.0
_L_SLOPE = 24389.0 / 27.0  # 903.3

# Fixed-point grid of OpenCV's RGB->Lab interpolation.
_BASE_SHIFT = 14  # inputs are rounded to 1/16384
_LUT_SHIFT = 5  # 32 cells per axis, 33 grid points
_FRAC_SHIFT = 4  # 16 interpolation steps per cell
_LUT_DIM = (1 << _LUT_SHIFT) + 1
_GAMMA_TABLE_SIZE = 1024


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(np.maximum(x, 0.0), 1.0 / 2.4) - 0.055)


@functools.cache
def _lightness_table() -> np.ndarray:
    """round(16384 * L / 100) at the 33^3 grid points, indexed [blue, green, red] as OpenCV does."""
    grid = _srgb_to_linear(np.arange(_LUT_DIM, dtype=np.float64) / (_LUT_DIM - 1)).astype(np.float32)
    blue, green, red = np.meshgrid(grid, grid, grid, indexing="ij")
    y_row = (_SRGB_TO_XYZ[1] / _WHITE[1]).astype(np.float32)
    y = (blue * y_row[2] + green * y_row[1]) + red * y_row[0]  # float32, in OpenCV's order of operations
    fy = np.cbrt(y.astype(np.float64)).astype(np.float32)  # correctly rounded: numpy's float32 SIMD cbrt varies by CPU
    lightness = np.where(y > np.float32(_LIN_THRESHOLD), np.float32(116) * fy - np.float32(16),
                         np.float32(_L_SLOPE) * y)
    return np.rint(np.float32(1 << _BASE_SHIFT) * lightness / np.float32(100)).astype(np.int32)


@functools.cache
def _inverse_gamma_spline() -> np.ndarray:
    """(1024, 4) cubic coefficients of linear->sRGB on [0, 1], a natural spline like OpenCV's."""
    n = _GAMMA_TABLE_SIZE
    f = _linear_to_srgb(np.arange(n + 1, dtype=np.float64) / n)
    # Natural cubic spline through unit-spaced samples: a forward sweep, then back substitution.
    sweep_l = np.zeros(n)
    sweep_r = np.zeros(n)
    for i in range(1, n):
        t = (f[i + 1] - 2.0 * f[i] + f[i - 1]) * 3.0
        sweep_l[i] = 1.0 / (4.0 - sweep_l[i - 1])
        sweep_r[i] = (t - sweep_r[i - 1]) * sweep_l[i]
    coeffs = np.zeros((n, 4))
    c_next = 0.0
    for i in range(n - 1, -1, -1):
        c = sweep_r[i] - sweep_l[i] * c_next
        coeffs[i] = (f[i], f[i + 1] - f[i] - (c_next + 2.0 * c) / 3.0, c, (c_next - c) / 3.0)
        c_next = c
    return coeffs.astype(np.float32)


def _device_table(table: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(table).to(device)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV's float L* (0..100) of an RGB image (..., 3, H, W) -> (..., 1, H, W), float32."""
    table = _device_table(_lightness_table(), rgb.device).reshape(-1)
    fixed = torch.round(rgb.float().clamp(0.0, 1.0) * float(1 << _BASE_SHIFT)).to(torch.int32)
    cell = fixed >> (_BASE_SHIFT - _LUT_SHIFT)
    frac = (fixed >> (_BASE_SHIFT - _LUT_SHIFT - _FRAC_SHIFT)) & ((1 << _FRAC_SHIFT) - 1)
    steps = 1 << _FRAC_SHIFT
    red, green, blue = cell.unbind(-3)
    fr, fg, fb = frac.unbind(-3)
    last = _LUT_DIM - 1
    total = torch.zeros_like(red)
    for db in (0, 1):
        wb = fb if db else steps - fb
        ib = (blue + db).clamp_max(last) * (_LUT_DIM * _LUT_DIM)
        for dg in (0, 1):
            wg = fg if dg else steps - fg
            ig = (green + dg).clamp_max(last) * _LUT_DIM
            for dr in (0, 1):
                wr = fr if dr else steps - fr
                ir = (red + dr).clamp_max(last)
                total += table[(ib + ig + ir).long()] * (wb * wg * wr)
    shift = 3 * _FRAC_SHIFT
    level = (total + (1 << (shift - 1))) >> shift
    return (level.float() * (100.0 / (1 << _BASE_SHIFT))).unsqueeze(-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """OpenCV's float Lab -> RGB: (..., 3, H, W) Lab -> (..., 3, H, W) RGB in [0, 1], float32."""
    big_l, a, b = lab.float().unbind(-3)
    low = big_l <= 8.0  # OpenCV: L <= 0.008856 * 903.3
    y_low = big_l / _f32(_L_SLOPE)
    fy_low = _f32(_LIN_SLOPE) * y_low + _f32(_LIN_BIAS)
    fy_high = (big_l + 16.0) / 116.0
    y = torch.where(low, y_low, fy_high * fy_high * fy_high)
    fy = torch.where(low, fy_low, fy_high)

    def finv(f: torch.Tensor) -> torch.Tensor:
        return torch.where(f <= _f32(6.0 / 29.0), (f - _f32(_LIN_BIAS)) / _f32(_LIN_SLOPE), f * f * f)

    x = finv(a / 500.0 + fy)
    z = finv(fy - b / 200.0)
    # elementwise, not a matmul: TF32 matmuls on a GPU would cost ~0.25 levels of precision
    matrix = (_XYZ_TO_SRGB * _WHITE[None, :]).astype(np.float32).tolist()
    linear = torch.stack([m0 * x + m1 * y + m2 * z for m0, m1, m2 in matrix], dim=-3).clamp(0.0, 1.0)
    return _spline_gamma(linear)


def _f32(value: float) -> float:
    """``value`` rounded to float32, as OpenCV's float constants are."""
    return float(np.float32(value))


def _spline_gamma(linear: torch.Tensor) -> torch.Tensor:
    coeffs = _device_table(_inverse_gamma_spline(), linear.device)
    scaled = linear * float(_GAMMA_TABLE_SIZE)
    index = scaled.to(torch.int64).clamp(0, _GAMMA_TABLE_SIZE - 1)
    t = scaled - index
    c = coeffs[index]
    return ((c[..., 3] * t + c[..., 2]) * t + c[..., 1]) * t + c[..., 0]


def gray_from_lightness(big_l: torch.Tensor) -> torch.Tensor:
    """The neutral RGB (a = b = 0) with lightness ``big_l`` (..., 1, H, W) -> (..., 3, H, W)."""
    zeros = torch.zeros_like(big_l)
    return lab_to_rgb(torch.cat([big_l, zeros, zeros], dim=-3))
