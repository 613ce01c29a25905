"""One rule for IMAGE channel counts, shared by every model node of the pack.

ComfyUI IMAGEs are (B, H, W, C) floats; the models see RGB. Gray (C = 1) is expanded to RGB, an
alpha channel (C = 4) is set aside and put back unchanged; a node returns as many channels as it
was given (a colorizer returns colour: 3, or 4 with alpha). Two channels (gray + alpha is not an
IMAGE layout ComfyUI's nodes produce) are refused with a message that says what to do.
"""

from __future__ import annotations

import torch

SUPPORTED_CHANNELS = (1, 3, 4)
# ITU-R BT.601 luma, what Pillow's convert("L") uses: colour → gray for 1-channel outputs
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def split_channels(images: torch.Tensor, node: str = "this node") -> tuple[torch.Tensor, torch.Tensor | None]:
    """``images`` (B, H, W, 1|3|4) → (RGB (B, H, W, 3), alpha (B, H, W, 1) or None); no copies.

    Raises ``ValueError`` naming ``node`` for another shape.
    """
    if images.ndim != 4 or images.shape[-1] not in SUPPORTED_CHANNELS:
        raise ValueError(
            f"{node} expected an IMAGE batch (B, H, W, 1|3|4), got shape {tuple(images.shape)}: convert the "
            "image to RGB first (e.g. with a Join Image with Alpha / Split Image with Alpha node)")
    channels = images.shape[-1]
    rgb = images[..., :3] if channels >= 3 else images.expand(-1, -1, -1, 3)
    alpha = images[..., 3:] if channels == 4 else None
    return rgb, alpha


def join_channels(rgb: torch.Tensor, alpha: torch.Tensor | None, channels: int) -> torch.Tensor:
    """The inverse of :func:`split_channels`: ``channels`` = 1 gives BT.601 luma, 4 appends ``alpha``."""
    if channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
        return (rgb * weights).sum(dim=-1, keepdim=True)
    if channels == 4 and alpha is not None:
        return torch.cat([rgb, alpha.to(device=rgb.device, dtype=rgb.dtype)], dim=-1)
    return rgb
