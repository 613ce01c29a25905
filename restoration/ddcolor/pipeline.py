"""The DDColor colorization pipeline in plain torch: batched, on any device.

Step by step as the official ``ColorizationPipeline.process`` (models.md 1.3), with every
deviation behind an option:

1. L of the photo at full resolution (OpenCV-exact, see :mod:`.lab`);
2. the photo resized to the model resolution with bilinear interpolation (``cv2.resize``
   INTER_LINEAR == ``F.interpolate(bilinear, align_corners=False)``); ``keep_aspect`` keeps the
   photo's shape instead of squashing it to a square;
3. its L, turned into a neutral gray RGB through Lab (a = b = 0), is what the model sees;
4. the model predicts ab at that resolution (``precision`` bf16 runs it under autocast);
5. optional: faces in ``face_mask`` get one consistent tone (:mod:`.face_tone`);
6. ab is brought to full resolution (``ab_upsample``: nearest = official, bilinear, guided);
7. optional: ab clamped to OpenCV's Lab range (``clamp_ab``), which removes the red/blue blotches
   out-of-range ab turns into after RGB clipping;
8. the photo's own L plus the new ab, converted back to RGB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812

from ..batching import run_in_chunks
from ..channels import split_channels
from .face_tone import harmonise_face_tone
from .lab import gray_from_lightness, lab_to_rgb, lightness
from .options import ColorizeOptions, model_resolution
from .upsample import upsample_ab

AB_RANGE = (-128.0, 127.0)  # OpenCV's documented a*, b* range
# Working memory, measured on CPU (models.md 1.5: ~3.5-4 KB per model pixel for tiny and large at
# 512/1024, fp32) plus the full-resolution colour math; bf16 activations take about half.
BYTES_PER_MODEL_PIXEL = {"fp32": 4200, "bf16": 2400}
BYTES_PER_PHOTO_PIXEL = 320
MAX_CHUNK = 8


def working_memory(height: int, width: int, options: ColorizeOptions, images: int = 1) -> int:
    """Bytes one call needs for ``images`` photos of ``height`` x ``width`` beyond the weights."""
    mh, mw = model_resolution(height, width, options.input_size, options.keep_aspect)
    per_image = mh * mw * BYTES_PER_MODEL_PIXEL[options.precision] + height * width * BYTES_PER_PHOTO_PIXEL
    return per_image * images


def colorize_rgb(
    rgb: torch.Tensor,
    model: torch.nn.Module,
    options: ColorizeOptions,
    face_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Colorize RGB (B, 3, H, W) in [0, 1] on the model's device; returns (B, 3, H, W) float32."""
    height, width = rgb.shape[-2:]
    size = model_resolution(height, width, options.input_size, options.keep_aspect)
    rgb = rgb.float()
    orig_l = lightness(rgb)
    resized = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
    small_l = lightness(resized)
    ab = predict_ab(model, gray_from_lightness(small_l), options.precision)
    if face_mask is not None:
        mask = F.interpolate(face_mask.float(), size=size, mode="bilinear", align_corners=False,
                             antialias=size[0] < face_mask.shape[-2] or size[1] < face_mask.shape[-1])
        ab = harmonise_face_tone(ab, mask.clamp(0.0, 1.0))
    ab = upsample_ab(ab, (height, width), options.ab_upsample, guide_small=small_l, guide_full=orig_l)
    if options.clamp_ab:
        ab = ab.clamp(*AB_RANGE)
    return lab_to_rgb(torch.cat([orig_l, ab], dim=1))


def predict_ab(model: torch.nn.Module, gray: torch.Tensor, precision: str) -> torch.Tensor:
    """The model's ab (B, 2, h, w) float32 for neutral gray RGB input."""
    with torch.autocast(device_type=gray.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        ab = model(gray)
    _release_hooked_features(model)
    return ab.float()


def _release_hooked_features(model: torch.nn.Module) -> None:
    """DDColor's encoder hooks keep the last activations alive; drop them between chunks."""
    encoder = getattr(model, "encoder", None)
    for hook in getattr(encoder, "hooks", ()):
        hook.feature = None


def colorize(
    images: torch.Tensor,
    model: torch.nn.Module,
    options: ColorizeOptions,
    *,
    face_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    chunk_size: int = 1,
    output_device: torch.device | str = "cpu",
    before_chunk: Callable[[], None] | None = None,
    after_chunk: Callable[[int], None] | None = None,
    on_oom: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Colorize a ComfyUI IMAGE batch (B, H, W, C) in chunks; returns (B, H, W, 3 or 4) float32.

    ``face_mask`` is a ComfyUI MASK ((H, W) or (B or 1, H, W)). Chunks run on ``device`` (the
    model's); ``before_chunk`` / ``after_chunk(done)`` / ``on_oom(new_chunk)`` are the hooks of
    :func:`restoration.batching.run_in_chunks` (interrupt checks, progress, cache flushing).
    """
    rgb_all, alpha_all = split_channels(images, "DDColor Colorize")
    total, height, width, channels = images.shape
    masks = _batch_masks(face_mask, total)
    if device is None:
        device = next(model.parameters()).device
    out = torch.empty((total, height, width, 4 if channels == 4 else 3), dtype=torch.float32, device=output_device)

    def run_chunk(start: int, end: int) -> None:
        rgb = rgb_all[start:end].to(device=device, dtype=torch.float32)
        mask = None
        if masks is not None:
            chunk_masks = masks[start:end] if masks.shape[0] == total else masks.expand(end - start, -1, -1)
            mask = chunk_masks.unsqueeze(1).to(device)
        with torch.inference_mode():
            result = colorize_rgb(rgb.movedim(-1, 1), model, options, mask).movedim(1, -1)
        if alpha_all is not None:
            result = torch.cat([result, alpha_all[start:end].to(device=result.device, dtype=result.dtype)], dim=-1)
        out[start:end] = result.to(output_device)

    run_in_chunks(total, run_chunk, chunk_size=chunk_size, before_chunk=before_chunk, after_chunk=after_chunk,
                  on_oom=on_oom)
    return out


def _batch_masks(face_mask: torch.Tensor | None, total: int) -> torch.Tensor | None:
    if face_mask is None:
        return None
    masks = face_mask if face_mask.ndim == 3 else face_mask.reshape(1, *face_mask.shape[-2:])
    if masks.ndim != 3 or masks.shape[0] not in (1, total):
        raise ValueError(f"face_mask has shape {tuple(face_mask.shape)}: expected one mask (H, W) or one per "
                         f"image ({total}, H, W)")
    return masks
