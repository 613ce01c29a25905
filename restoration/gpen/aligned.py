"""GPEN on already-aligned face crops: resize to the model, restore, optionally resize back.

The resize is the official pipeline's by default (plain bilinear, ``cv2.resize`` INTER_LINEAR);
antialiased shrinking is an option. Channel counts follow :mod:`restoration.channels`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

from ..batching import run_in_chunks
from ..channels import join_channels, split_channels
from .pipeline import Chunking, Restore


def resize_faces(x: torch.Tensor, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    """(N, C, H, W) → (N, C, *size) bilinear with half-pixel centres.

    The default is the official pipeline's ``cv2.resize(..., INTER_LINEAR)``: plain bilinear in both
    directions (≤ 1 level from it on 8-bit data). ``antialias`` low-pass filters when shrinking: less
    aliasing (moiré, jagged hair) from a large crop, at the cost of leaving the official result.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return nnf.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias and shrink)


def restore_aligned(images: torch.Tensor, restore: Restore, face_size: int, *, chunking: Chunking | None = None,
                    device: torch.device | str | None = None, antialias: bool = False,
                    keep_input_size: bool = False) -> torch.Tensor:
    """Already-aligned face crops (B,H,W,C) → restored faces (B,S,S,C) at the model size S.

    Crops that are not S×S are resized with :func:`resize_faces` (official bilinear unless
    ``antialias``); ``keep_input_size`` resizes the result back to H×W the same way. C is 1, 3 or 4:
    gray comes back gray (BT.601 luma), alpha is kept (resized to the output size). Raises ``ValueError`` for
    another channel count.
    """
    chunking = chunking or Chunking()
    device = torch.device(device) if device is not None else images.device
    rgb, alpha = split_channels(images, "GPEN Restore Aligned Face")
    batch, height, width, channels = images.shape
    out_hw = (height, width) if keep_input_size else (face_size, face_size)
    out = torch.empty((batch, *out_hw, channels), dtype=images.dtype)

    def run_chunk(start: int, end: int) -> None:
        x = rgb[start:end].to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
        x = resize_faces(x, (face_size, face_size), antialias).clamp(0.0, 1.0)
        restored = resize_faces(restore(x).to(torch.float32), out_hw, antialias).clamp(0.0, 1.0)
        kept = None
        if alpha is not None:
            kept = alpha[start:end].to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
            kept = resize_faces(kept, out_hw, antialias).clamp(0.0, 1.0).permute(0, 2, 3, 1)
        joined = join_channels(restored.permute(0, 2, 3, 1), kept, channels)
        out[start:end] = joined.to(out.dtype).cpu()

    run_in_chunks(batch, run_chunk, chunk_size=chunking.chunk_size, before_chunk=chunking.before_chunk,
                  after_chunk=lambda done: chunking.progress(done, batch), on_oom=chunking.on_oom)
    return out
