"""Is an IMAGE batch clipped? A washed-out source must never pass through a model silently.

The typical case: a 16-bit grayscale scan read by an 8-bit loader (core Load Image) arrives as an
almost entirely white image, and a colorizer then returns a flat white photo with no warning.
"""

from __future__ import annotations

import torch

CLIPPED_SHARE = 0.98  # more than this share of pixels at the extreme = clipped
_WHITE = 1.0 - 0.5 / 255.0  # the top 8-bit level
_BLACK = 0.5 / 255.0


def clipping_note(images: torch.Tensor, share: float = CLIPPED_SHARE) -> str | None:
    """A sentence for the user when more than ``share`` of all pixels of ``images`` (B, H, W, C) are pure
    white or pure black on every colour channel, else ``None``."""
    if images.numel() == 0:
        return None
    colour = images[..., :3] if images.shape[-1] >= 3 else images[..., :1]
    for label, at_extreme in (("pure white", (colour >= _WHITE).all(dim=-1)),
                              ("pure black", (colour <= _BLACK).all(dim=-1))):
        fraction = float(at_extreme.float().mean())
        if fraction > share:
            return (f"the input looks clipped: {fraction:.1%} of its pixels are {label}, so there is little "
                    "left to colorize. A 16-bit scan read by an 8-bit loader looks like this: load it with "
                    "'Load Photo (any bit depth)'")
    return None
