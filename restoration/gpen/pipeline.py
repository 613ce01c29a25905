"""Whole-photo GPEN face restoration: detect → align → restore → parse → blend → paste back.

Follows GPEN's own face pipeline (threshold 0.9, its 5-point template, small-face smoothing, alpha
fidelity blend, ParseNet mask, larger-mask-wins paste) but stays in float RGB from start to end:
no uint8 round trips, bilinear resampling in torch on the models' device, exact inverse transform
for the paste. The detector, the generator and the parser come in as callables, so tests can
inject detections and identity restorers, and the nodes can wrap them in ComfyUI's model management.
Faces of every image in the batch are restored together in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as nnf

from ..batching import run_in_chunks
from ..channels import join_channels, split_channels
from .alignment import estimate_similarity, footprint, invert_affine, reference_points, warp_affine
from .detection import DEFAULT_THRESHOLD, DetectedFace

SMALL_FACE_SIZE = 100  # GPEN smooths restored faces whose detected box is narrower than this
Detect = Callable[[torch.Tensor, float], Sequence[DetectedFace]]  # (H,W,C) RGB 0..1, threshold
Restore = Callable[[torch.Tensor], torch.Tensor]  # (N,3,S,S) RGB 0..1 → same
Parse = Callable[[torch.Tensor], torch.Tensor]  # (N,3,S,S) RGB 0..1 → (N,S,S) mask 0..1


@dataclass(frozen=True)
class FaceOptions:
    detection_threshold: float = DEFAULT_THRESHOLD
    only_largest_face: bool = False
    alpha: float = 1.0  # 1 = restored face only, 0 = original crop only
    restore_small_faces: bool = True
    small_face_size: int = SMALL_FACE_SIZE

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be within 0..1, got {self.alpha}")
        if not 0.0 < self.detection_threshold <= 1.0:
            raise ValueError(f"detection_threshold must be within (0, 1], got {self.detection_threshold}")
        if self.small_face_size < 0:
            raise ValueError(f"small_face_size must be ≥ 0, got {self.small_face_size}")


@dataclass
class Chunking:
    """How faces are batched through the networks, and the hooks between chunks."""

    chunk_size: int = 4
    before_chunk: Callable[[], None] | None = None  # raise here to stop (interrupt)
    on_progress: Callable[[int, int], None] | None = None  # (steps done, steps total)
    on_oom: Callable[[int], None] | None = None  # (new chunk size): free caches

    def check(self) -> None:
        if self.before_chunk is not None:
            self.before_chunk()

    def progress(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)


@dataclass(frozen=True)
class PlannedFace:
    image_index: int
    face: DetectedFace
    to_crop: np.ndarray  # 2×3, image pixels → crop pixels
    small: bool


@dataclass
class FaceRestoreResult:
    images: torch.Tensor  # (B,H,W,C)
    masks: torch.Tensor  # (B,H,W): how much of each pixel comes from a restored face
    faces_restored: list[int]
    faces_skipped_small: list[int] = field(default_factory=list)
    chunk_size: int = 0

    def notes(self, threshold: float | None = None) -> list[str]:
        """What the user should know: images that passed through without a face, small faces left alone."""
        notes = []
        batch = len(self.faces_restored)
        skipped = self.faces_skipped_small or [0] * batch
        faceless = [i + 1 for i, (n, s) in enumerate(zip(self.faces_restored, skipped, strict=True))
                    if n == 0 and s == 0]
        at = f"no face ≥ {threshold:g}" if threshold is not None else "no face"
        if faceless and batch == 1:
            notes.append(f"the image: {at}; it passes through unchanged")
        elif faceless:
            which = ", ".join(map(str, faceless))
            notes.append(f"{len(faceless)} of {batch} images: {at} (image{'s' if len(faceless) > 1 else ''} "
                         f"{which}); they pass through unchanged")
        for i, (n, s) in enumerate(zip(self.faces_restored, skipped, strict=True)):
            if s:
                which = f"image {i + 1} of {batch}" if batch > 1 else "the image"
                notes.append(f"{which}: {n} face(s) restored, {s} face(s) smaller than the small-face size "
                             "left untouched")
        return notes


def alignment_matrix(landmarks: np.ndarray, face_size: int) -> np.ndarray:
    """Image → crop similarity that puts the five landmarks on GPEN's template for ``face_size``."""
    return estimate_similarity(landmarks, reference_points(face_size))


def plan_faces(detections: Sequence[Sequence[DetectedFace]], options: FaceOptions,
               face_size: int) -> tuple[list[PlannedFace], list[int]]:
    """Faces to restore (after the largest-face and small-face options) and, per image, small faces skipped."""
    planned: list[PlannedFace] = []
    skipped: list[int] = []
    for index, faces in enumerate(detections):
        faces = [f for f in faces if f.score >= options.detection_threshold]
        if options.only_largest_face and faces:
            faces = [max(faces, key=lambda f: f.area)]
        n_skipped = 0
        for face in faces:
            small = face.short_side < options.small_face_size
            if small and not options.restore_small_faces:
                n_skipped += 1
                continue
            try:
                to_crop = alignment_matrix(face.landmarks, face_size)
            except ValueError:  # degenerate landmarks (all on one point): nothing to align, not a usable face
                continue
            planned.append(PlannedFace(index, face, to_crop, small))
        skipped.append(n_skipped)
    return planned, skipped


def smooth(faces: torch.Tensor) -> torch.Tensor:
    """GPEN's small-face softening: a 3×3 [1,2,1]ᵀ[1,2,1]/16 filter with mirrored borders."""
    taps = torch.tensor([1.0, 2.0, 1.0], device=faces.device, dtype=faces.dtype)
    kernel = (taps[:, None] * taps[None, :] / 16.0).expand(faces.shape[1], 1, 3, 3)
    return nnf.conv2d(nnf.pad(faces, (1, 1, 1, 1), mode="reflect"), kernel, groups=faces.shape[1])


def restore_faces(images: torch.Tensor, *, detect: Detect, restore: Restore, parse: Parse, face_size: int,
                  options: FaceOptions | None = None, chunking: Chunking | None = None,
                  device: torch.device | str | None = None) -> FaceRestoreResult:
    """Restore every detected face of an IMAGE batch (B,H,W,C float 0..1) and blend them back.

    C is 1, 3 or 4 and the output has as many channels (gray: BT.601 luma of the restored faces; alpha
    kept). Images without a face come back bit-identical; so does every pixel outside the pasted faces.
    The returned masks say where faces were pasted. Raises ``ValueError`` for another channel count.
    """
    options = options or FaceOptions()
    chunking = chunking or Chunking()
    device = torch.device(device) if device is not None else images.device
    rgb_in, alpha = split_channels(images, "GPEN Restore Faces")
    batch, height, width, channels = images.shape

    detections = []
    for b in range(batch):
        chunking.check()
        detections.append(list(detect(rgb_in[b], options.detection_threshold)))
        chunking.progress(b + 1, batch)
    planned, skipped = plan_faces(detections, options, face_size)
    faces_restored = [sum(1 for p in planned if p.image_index == b) for b in range(batch)]
    total_steps = batch + len(planned)
    chunking.progress(batch, total_steps)
    if not planned:
        return FaceRestoreResult(images.clone(), torch.zeros(images.shape[:3], dtype=images.dtype),
                                 faces_restored, skipped, 0)

    out = rgb_in.clone()
    masks = torch.zeros((batch, height, width), dtype=torch.float32)
    # Restored faces of an image are collected on a canvas until its last face is in, then blended in and
    # the canvas dropped: memory holds the canvases of the images in flight, not of the whole batch.
    canvases: dict[int, torch.Tensor] = {}
    remaining = dict(enumerate(faces_restored))
    pasted: set[int] = set()  # planned faces already on their canvas (an OOM retry must not paste twice)

    def run_chunk(start: int, end: int) -> None:
        chunk = planned[start:end]
        sources: dict[int, torch.Tensor] = {}
        crops = []
        for p in chunk:
            if p.image_index not in sources:
                sources[p.image_index] = _as_nchw(rgb_in[p.image_index], device)
            # edge-extended, not black, where a crop reaches past the photo: no dark fringe at the photo's edge
            crops.append(warp_affine(sources[p.image_index], p.to_crop, (face_size, face_size), border="border"))
        crops_t = torch.cat(crops)
        restored = restore(crops_t).to(device=device, dtype=torch.float32)
        face_masks = parse(restored).to(device=device, dtype=torch.float32)
        small = torch.tensor([p.small for p in chunk], device=device)
        if bool(small.any()):
            restored = torch.where(small[:, None, None, None], smooth(restored), restored)
        if options.alpha < 1.0:
            restored = options.alpha * restored + (1.0 - options.alpha) * crops_t
        for k, (p, face, mask) in enumerate(zip(chunk, restored, face_masks, strict=True)):
            if start + k in pasted:
                continue
            b = p.image_index
            if b not in canvases:
                canvases[b] = torch.zeros((3, height, width), dtype=torch.float32)
            _paste(p, face, mask, canvases[b], masks[b], device)
            pasted.add(start + k)
            remaining[b] -= 1
            if remaining[b] == 0:
                _blend(out[b], canvases.pop(b), masks[b])

    used = run_in_chunks(
        len(planned), run_chunk, chunk_size=chunking.chunk_size, before_chunk=chunking.before_chunk,
        after_chunk=lambda done: chunking.progress(batch + done, total_steps), on_oom=chunking.on_oom,
    )
    result = join_channels(out, alpha, channels)
    if channels == 1:  # luma of an untouched gray pixel is the pixel up to rounding: keep it exact
        result = torch.where(masks[..., None] > 0, result, images)
    return FaceRestoreResult(result, masks.to(images.dtype), faces_restored, skipped, used)


def _blend(image: torch.Tensor, faces: torch.Tensor, mask: torch.Tensor) -> None:
    """``image`` (H,W,3, in place) ← image·(1−mask) + faces·mask, computed only over the box where
    mask > 0: a few small faces in a large photo cost memory for their box, not the whole frame."""
    rows = torch.nonzero(mask.amax(dim=1) > 0)
    cols = torch.nonzero(mask.amax(dim=0) > 0)
    if rows.numel() == 0:
        return
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    m = mask[y0:y1, x0:x1, None].to(image.dtype)
    region = image[y0:y1, x0:x1]
    region.copy_((region * (1.0 - m) + faces[:, y0:y1, x0:x1].permute(1, 2, 0).to(image.dtype) * m).clamp(0.0, 1.0))


def _as_nchw(image_hwc: torch.Tensor, device: torch.device) -> torch.Tensor:
    return image_hwc.to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]


def _paste(p: PlannedFace, face: torch.Tensor, mask: torch.Tensor, face_canvas: torch.Tensor,
           mask_canvas: torch.Tensor, device: torch.device) -> None:
    """Warp one restored face and its mask back onto its image's canvases (3,H,W) / (H,W).

    Where its mask is larger than what is there, this face wins; the canvas mask keeps the maximum.
    """
    size = face.shape[-1]
    height, width = mask_canvas.shape[-2:]
    to_image = invert_affine(p.to_crop)
    x0, y0, x1, y1 = footprint(to_image, (size, size), (height, width))
    if x1 <= x0 or y1 <= y0:
        return
    both = torch.cat([face, mask[None]], dim=0)[None]
    warped = warp_affine(both, to_image, (y1 - y0, x1 - x0), offset=(x0, y0))[0]
    new_face, new_mask = warped[:3], warped[3].clamp(0.0, 1.0)
    old_mask = mask_canvas[y0:y1, x0:x1].to(device)
    old_face = face_canvas[:, y0:y1, x0:x1].to(device)
    wins = new_mask > old_mask
    face_canvas[:, y0:y1, x0:x1] = torch.where(wins, new_face, old_face).to(face_canvas.device)
    mask_canvas[y0:y1, x0:x1] = torch.maximum(old_mask, new_mask).to(mask_canvas.device)


class GeneratorRestorer:
    """``restore(faces 0..1) -> faces 0..1`` through a GPEN generator on its current device."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(self, faces: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        x = faces.to(device=param.device, dtype=param.dtype) * 2.0 - 1.0
        return (self.model(x) * 0.5 + 0.5).clamp(0.0, 1.0)
