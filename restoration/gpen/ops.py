"""Pure-PyTorch building blocks of the StyleGAN2 family: FIR resampling, equalised layers, fused lrelu.

No compiled CUDA extension is needed: every op below is a handful of standard torch calls, so the
model runs on CPU, CUDA, MPS or XPU alike. Parameter names and shapes follow the released GPEN
files (``weight``/``bias``/``kernel``), which is what lets them load strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_fir_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum to ``gain``."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (true convolution), then decimate.

    Applied to every channel independently; ``pad`` is the same (before, after) on both axes.
    """
    b, c, h, w = x.shape
    if up > 1:  # put each sample at the top-left of an up×up block of zeros
        x = x.reshape(b, c, h, 1, w, 1)
        x = nnf.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    kh, kw = kernel.shape
    # depthwise conv (one filter per channel): several times faster on CPU than folding channels into the batch
    weight = torch.flip(kernel, (0, 1)).to(dtype=x.dtype, device=x.device).expand(c, 1, kh, kw)
    before, after = pad
    if before == after >= 0:
        x = nnf.conv2d(x, weight, padding=before, groups=c)
    else:
        x = nnf.pad(x, (max(before, 0), max(after, 0), max(before, 0), max(after, 0)))
        if before < 0 or after < 0:
            hh, ww = x.shape[-2:]
            x = x[:, :, max(-before, 0):hh - max(-after, 0), max(-before, 0):ww - max(-after, 0)]
        x = nnf.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    """FIR low-pass used around resampling; ``kernel`` is a persistent buffer (it is in the released files)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps, gain=float(upsample_factor**2)))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """×``factor`` FIR upsampling (zero insertion + blur), used on the RGB skip path."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_fir_kernel(taps, gain=float(factor**2)))
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``sqrt(2) * leaky_relu(x + bias, 0.2)`` with the bias broadcast over channel dim 1.

    ``inplace`` reuses ``x`` (only for a tensor nobody else holds): one allocation instead of three.
    """
    shape = (1, -1) + (1,) * (x.ndim - 2)
    bias = bias.view(shape).to(x.dtype)
    out = x.add_(bias) if inplace else x + bias
    return nnf.leaky_relu_(out, LRELU_SLOPE).mul_(LRELU_GAIN)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + gain-corrected leaky ReLU (the released files store this bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualConv2d(nn.Module):
    """Conv with He-scaled weights applied at run time (equalised learning rate)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nnf.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; ``lr_mul`` scales both weight and bias at run time."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(nnf.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return nnf.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ConvLayer(nn.Sequential):
    """[Blur →] EqualConv2d (stride 2 when downsampling) → FusedLeakyReLU: the encoder's unit.

    A ``Sequential`` so the released key names come out as ``<i>.kernel`` / ``<i>.weight`` / ``<i>.bias``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, downsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_taps) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_taps, pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=2, padding=0, bias=False))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False))
        layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)
