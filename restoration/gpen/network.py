"""The GPEN generator: an encoder to 4×4, a latent from it, and a StyleGAN2 generator fed its features.

Attribute names (``ecd0``…, ``final_linear``, ``generator``) reproduce the released key layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .ops import ConvLayer, EqualLinear
from .stylegan import StyleGenerator

BLUR_TAPS = (1, 3, 3, 1)
LR_MLP = 0.01


@dataclass(frozen=True)
class GPENConfig:
    """Constructor values of one GPEN generator (all released BFR files use style_dim 512, 8 mapping layers)."""

    size: int
    channel_multiplier: int
    narrow: float
    style_dim: int = 512
    n_mlp: int = 8

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    def channels(self) -> dict[int, int]:
        """Feature width per resolution (4…2048 px)."""
        cm, n = self.channel_multiplier, self.narrow
        table = {4: int(512 * n), 8: int(512 * n), 16: int(512 * n), 32: int(512 * n),
                 64: int(256 * cm * n), 128: int(128 * cm * n), 256: int(64 * cm * n),
                 512: int(32 * cm * n), 1024: int(16 * cm * n), 2048: int(8 * cm * n)}
        return table

    def describe(self) -> str:
        narrow = int(self.narrow) if float(self.narrow).is_integer() else self.narrow
        return f"GPEN {self.size} (channel_multiplier {self.channel_multiplier}, narrow {narrow})"


# The configurations of the released BFR generators, by output size.
RELEASED_CONFIGS: dict[int, GPENConfig] = {
    256: GPENConfig(256, channel_multiplier=1, narrow=0.5),
    512: GPENConfig(512, channel_multiplier=2, narrow=1),
    1024: GPENConfig(1024, channel_multiplier=2, narrow=1),
    2048: GPENConfig(2048, channel_multiplier=2, narrow=1),
}


class GPEN(nn.Module):
    """RGB face in [-1, 1] at ``config.size``² → restored RGB face, roughly in [-1, 1]."""

    def __init__(self, config: GPENConfig) -> None:
        super().__init__()
        if config.size not in RELEASED_CONFIGS:
            raise ValueError(f"GPEN size must be one of {sorted(RELEASED_CONFIGS)}, got {config.size}")
        self.config = config
        ch = config.channels()
        size = config.size
        self.n_encoder = config.log_size - 1
        self.add_module("ecd0", nn.Sequential(ConvLayer(3, ch[size], 1)))
        res = size
        for i in range(1, self.n_encoder):
            self.add_module(f"ecd{i}", nn.Sequential(ConvLayer(ch[res], ch[res // 2], 3, downsample=True,
                                                               blur_taps=BLUR_TAPS)))
            res //= 2
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, config.style_dim, activate=True))
        self.generator = StyleGenerator(size, config.style_dim, config.n_mlp, ch, lr_mlp=LR_MLP, blur_taps=BLUR_TAPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.config.size, self.config.size):
            raise ValueError(f"{self.config.describe()} expects {self.config.size}×{self.config.size} input, "
                             f"got {tuple(x.shape[-2:])}")
        encoded = []  # fine to coarse: size, size/2, …, 4
        for i in range(self.n_encoder):
            x = getattr(self, f"ecd{i}")(x)
            encoded.append(x)
        z = self.final_linear(x.flatten(1))
        # coarse to fine; the 4×4 map feeds conv1 once, every finer map feeds both convs of its resolution
        coarse_to_fine = encoded[::-1]
        features = [coarse_to_fine[0]] + [f for f in coarse_to_fine[1:] for _ in range(2)]
        return self.generator(z, features)
