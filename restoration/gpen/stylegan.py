"""StyleGAN2 synthesis network with GPEN's twist: encoder features are *concatenated*, not added as noise.

Each styled conv's output is joined by ``weight * feature`` (the encoder map of the same resolution),
so the following layer and the activation bias see twice the channels. The modulated convolution is
computed by scaling the input by the style and the output by the demodulation factor, which equals
convolving with per-sample modulated weights but lets a batch share one ordinary convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

from .ops import Blur, EqualLinear, FusedLeakyReLU, Upsample, fused_leaky_relu

DEMOD_EPS = 1e-8


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Style-modulated (optionally demodulated, optionally ×2 upsampling) convolution.

    ``weight`` is stored 5-D ``(1, out, in, k, k)`` as in the released files.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, demodulate: bool = True,
                 upsample: bool = False, blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        if upsample:
            factor = 2
            p = (len(blur_taps) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (B, in)
        weight = (self.weight[0] * self.scale).to(x.dtype)  # (out, in, k, k)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = nnf.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            out = nnf.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            w_energy = weight.pow(2).sum(dim=(2, 3))  # (out, in)
            demod = torch.rsqrt(s.pow(2) @ w_energy.t() + DEMOD_EPS)  # (B, out)
            out = out.mul_(demod[:, :, None, None])
        if self.upsample:
            out = self.blur(out)
        return out


class ConcatFeature(nn.Module):
    """GPEN's "noise injection": append ``weight * feature`` to the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.weight * feature), dim=1)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, upsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample, blur_taps=blur_taps)
        self.noise = ConcatFeature()
        self.activate = FusedLeakyReLU(out_ch * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        joined = self.noise(self.conv(x, style), feature)  # a fresh tensor: activate it in place
        return fused_leaky_relu(joined, self.activate.bias, inplace=True)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, *, upsample: bool = True,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return self.input.to(dtype).expand(batch, -1, -1, -1)


class StyleGenerator(nn.Module):
    """Mapping network + synthesis network; ``features`` are the encoder maps, coarse to fine.

    ``features`` holds one 4×4 map for ``conv1`` then two maps per resolution 8…size (one per conv).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: dict[int, int], *, lr_mlp: float = 0.01,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.size = size
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_taps=blur_taps)
        self.to_rgb1 = ToRGB(channels[4] * 2, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = channels[4]
        for i in range(3, int(math.log2(size)) + 1):
            out_ch = channels[2**i]
            self.convs.append(StyledConv(in_ch * 2, out_ch, 3, style_dim, upsample=True, blur_taps=blur_taps))
            self.convs.append(StyledConv(out_ch * 2, out_ch, 3, style_dim, blur_taps=blur_taps))
            self.to_rgbs.append(ToRGB(out_ch * 2, style_dim, blur_taps=blur_taps))
            in_ch = out_ch

    def forward(self, z: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        w = self.style(z)  # one latent for every layer: GPEN never mixes styles
        out = self.conv1(self.input(z.shape[0], z.dtype), w, features[0])
        skip = self.to_rgb1(out, w)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w, features[1 + 2 * k])
            out = self.convs[2 * k + 1](out, w, features[2 + 2 * k])
            skip = to_rgb(out, w, skip)
        return skip
