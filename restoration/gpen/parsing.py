"""The soft blend mask GPEN pastes faces with: ParseNet face parsing, border, heavy Gaussian blur.

ParseNet (facexlib's network, 19 CelebAMask-HQ classes) runs on the *restored* face at 512 px;
skin, brows, eyes, glasses, ears, nose, mouth, lips, hair and neck count as face, background, hat
and cloth do not. A 26-px border is cleared and the mask is blurred twice with a 101-tap σ=4
Gaussian, then resized to the face crop size. Computed in float (GPEN rounds to uint8 between steps).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as nnf

from ..weights import PARSER, load_strictly, read_weights

PARSE_SIZE = 512
N_CLASSES = 19
# 0 background, 14 hat, 18 cloth are not face; everything else (1–13, 15–17) is.
FACE_CLASSES = tuple(c for c in range(N_CLASSES) if c not in (0, 14, 18))
BORDER = 26
BLUR_TAPS = 101
BLUR_SIGMA = 4.0
BLUR_PASSES = 2


def build_parser_network(state_dict: Mapping[str, torch.Tensor], name: str = "parser") -> torch.nn.Module:
    """facexlib's ParseNet(512, 512, 19) with ``state_dict`` loaded strictly."""
    from facexlib.parsing.parsenet import ParseNet

    with torch.device("meta"):  # no random init: every tensor comes from the file
        net = ParseNet(in_size=PARSE_SIZE, out_size=PARSE_SIZE, parsing_ch=N_CLASSES)
    return load_strictly(net, state_dict, name, PARSER, "a ParseNet face parser")


def load_parser_file(path: str | os.PathLike[str]) -> torch.nn.Module:
    """The parser in ``path``; :class:`restoration.weights.WeightFileError` names a damaged or wrong file."""
    return build_parser_network(read_weights(path), os.path.basename(os.fspath(path)))


def gaussian_taps(taps: int = BLUR_TAPS, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    x = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def gaussian_blur(mask: torch.Tensor, taps: int = BLUR_TAPS, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable blur of (N,H,W) maps with mirrored borders (OpenCV's default BORDER_REFLECT_101)."""
    k = gaussian_taps(taps, sigma).to(device=mask.device, dtype=mask.dtype)
    r = taps // 2
    x = mask[:, None]
    x = nnf.conv2d(nnf.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = nnf.conv2d(nnf.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x[:, 0]


def soften(hard_mask: torch.Tensor) -> torch.Tensor:
    """GPEN's post-processing of a 0/1 face mask at parse size: clear the border, blur twice."""
    m = hard_mask.clone()
    m[:, :BORDER, :] = 0
    m[:, -BORDER:, :] = 0
    m[:, :, :BORDER] = 0
    m[:, :, -BORDER:] = 0
    for _ in range(BLUR_PASSES):
        m = gaussian_blur(m)
    return m


class FaceParser:
    """Callable ``mask(faces_rgb_0_1 (N,3,S,S)) -> (N,S,S)`` soft face masks in [0, 1]."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    @torch.no_grad()
    def __call__(self, faces: torch.Tensor) -> torch.Tensor:
        device = next(self.network.parameters()).device
        size = faces.shape[-1]
        x = faces.to(device=device, dtype=torch.float32)
        if size != PARSE_SIZE:
            x = nnf.interpolate(x, size=(PARSE_SIZE, PARSE_SIZE), mode="bilinear", align_corners=False,
                              antialias=size > PARSE_SIZE)
        logits = self.network(x * 2.0 - 1.0)[0]
        labels = logits.argmax(dim=1)
        face_classes = torch.tensor(FACE_CLASSES, device=device)
        hard = torch.isin(labels, face_classes).float()
        mask = soften(hard)
        if size != PARSE_SIZE:
            mask = nnf.interpolate(mask[:, None], size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=size < PARSE_SIZE)[:, 0]
        return mask.clamp(0.0, 1.0).to(faces.device)
