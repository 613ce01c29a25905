"""The colorize pipeline: official parity, batching, interrupts, OOM retries and every option."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from harness.ddcolor_checkpoints import shared_module
from restoration_governor.restoration.ddcolor.face_tone import SKIN_A_RANGE, SKIN_B_RANGE
from restoration_governor.restoration.ddcolor.lab import lab_to_rgb, lightness
from restoration_governor.restoration.ddcolor.options import ColorizeOptions
from restoration_governor.restoration.ddcolor.pipeline import colorize, colorize_rgb


# -- an independent reference: the official ColorizationPipeline.process, step by step (models.md 1.3) --
def official_pipeline(model: torch.nn.Module, bgr: np.ndarray, size: int) -> np.ndarray:
    img = (bgr / 255.0).astype(np.float32)
    orig_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
    resized = cv2.resize(img, (size, size))
    small_l = cv2.cvtColor(resized, cv2.COLOR_BGR2Lab)[:, :, :1]
    gray_lab = np.concatenate([small_l, np.zeros_like(small_l), np.zeros_like(small_l)], axis=-1)
    gray_rgb = cv2.cvtColor(gray_lab, cv2.COLOR_LAB2RGB)
    tensor = torch.from_numpy(gray_rgb.transpose((2, 0, 1))).float().unsqueeze(0)
    with torch.no_grad():
        ab = model(tensor).cpu()
    ab = F.interpolate(ab, size=img.shape[:2])[0].float().numpy().transpose(1, 2, 0)
    out = cv2.cvtColor(np.concatenate([orig_l, ab], axis=-1), cv2.COLOR_LAB2BGR)
    return (out * 255.0).round().astype(np.uint8)


def _photo(height: int, width: int, kind: str, seed: int = 0) -> np.ndarray:
    """BGR uint8 test photo: 'noise' colour, 'photo' (smooth structures + grain, tinted) or 'gray'."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    y, x = np.mgrid[0:1:complex(height), 0:1:complex(width)]
    base = 0.5 + 0.3 * np.sin(9 * x + 3 * y) * np.cos(7 * y) + 0.25 * ((x * 6).astype(int) % 2 - 0.5)
    base = np.clip(base + 0.05 * rng.standard_normal((height, width)), 0, 1)
    if kind == "gray":
        return np.repeat((base * 255).astype(np.uint8)[..., None], 3, axis=-1)
    bgr = np.stack([base, 0.8 * base + 0.1 * x, 0.9 * base + 0.1 * y], axis=-1)
    return np.clip(bgr * 255, 0, 255).astype(np.uint8)


def _to_image(bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 -> ComfyUI IMAGE (1, H, W, 3) RGB float, as LoadImage makes it."""
    return torch.from_numpy(bgr[..., ::-1].copy()).float().unsqueeze(0) / 255.0


def _to_bgr_u8(image: torch.Tensor) -> np.ndarray:
    return (image[0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()[..., ::-1]


OFFICIAL = ColorizeOptions(input_size=64, ab_upsample="nearest", keep_aspect=False, clamp_ab=False)


@pytest.mark.parametrize(("height", "width", "size", "kind"), [
    (37, 53, 64, "noise"),  # odd size, smaller than the model input
    (150, 221, 64, "photo"),  # larger than the model input: nearest upsampling blocks
    (61, 100, 96, "gray"),
    (64, 64, 64, "photo"),  # exactly the model size
])
def test_matches_the_official_pipeline_within_one_level(height, width, size, kind):
    model = shared_module("convnext-t")
    bgr = _photo(height, width, kind)
    expected = official_pipeline(model, bgr, size)
    options = ColorizeOptions(input_size=size, ab_upsample="nearest", keep_aspect=False, clamp_ab=False)
    ours = _to_bgr_u8(colorize(_to_image(bgr), model, options))
    diff = np.abs(ours.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max {diff.max()} levels"
    assert (diff > 0).mean() < 0.01  # off-by-one only where a value sits on a rounding boundary


def test_batch_results_equal_per_image_results():
    model = shared_module("convnext-t")
    batch = torch.cat([_to_image(_photo(40, 56, kind, seed)) for seed, kind in enumerate(["photo", "gray", "noise"])])
    together = colorize(batch, model, OFFICIAL, chunk_size=2)
    alone = torch.cat([colorize(batch[i:i + 1], model, OFFICIAL, chunk_size=1) for i in range(3)])
    assert (together - alone).abs().max() < 0.5 / 255


class FakeColorizer(torch.nn.Module):
    """Cheap stand-in with DDColor's interface: ab from the gray input, and a log of its batches."""

    def __init__(self, ab: torch.Tensor | None = None, oom_above: int | None = None) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))
        self.fixed_ab = ab
        self.oom_above = oom_above
        self.batches: list[tuple[int, ...]] = []

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and gray.shape[0] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(tuple(gray.shape))
        if self.fixed_ab is not None:
            return self.fixed_ab.expand(gray.shape[0], -1, -1, -1)
        return torch.cat([self.scale * (gray[:, :1] - 0.5), -self.scale * (gray[:, 1:2] - 0.3)], dim=1)


class Interrupted(Exception):
    pass


def test_an_interrupt_between_chunks_stops_the_batch():
    model = FakeColorizer()
    images = torch.rand(7, 24, 24, 3)
    done: list[int] = []

    def progress(count: int) -> None:  # like ComfyUI's ProgressBar hook, which raises on interrupt
        done.append(count)
        if count >= 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        colorize(images, model, OFFICIAL, chunk_size=2, after_chunk=progress)
    assert done == [2] and len(model.batches) == 1, "chunks after the interrupt must never run"

    checks = []

    def check_interrupt() -> None:  # the explicit check before each chunk
        checks.append(len(model.batches))
        if len(checks) == 3:
            raise Interrupted

    model.batches.clear()
    with pytest.raises(Interrupted):
        colorize(images, model, OFFICIAL, chunk_size=2, before_chunk=check_interrupt)
    assert len(model.batches) == 2


def test_out_of_memory_halves_the_chunk_and_finishes():
    images = torch.rand(5, 20, 30, 3)
    expected = colorize(images, FakeColorizer(), OFFICIAL, chunk_size=1)
    model = FakeColorizer(oom_above=1)
    retries: list[int] = []
    result = colorize(images, model, OFFICIAL, chunk_size=4, on_oom=retries.append)
    assert retries == [2, 1]
    assert [b[0] for b in model.batches] == [1] * 5
    assert torch.equal(result, expected)


def test_keep_aspect_runs_the_model_at_the_photos_shape():
    model = FakeColorizer()
    colorize(torch.rand(1, 300, 200, 3), model, ColorizeOptions(input_size=128, keep_aspect=True))
    colorize(torch.rand(1, 300, 200, 3), model, ColorizeOptions(input_size=128, keep_aspect=False))
    colorize(torch.rand(1, 90, 400, 3), model, ColorizeOptions(input_size=128, keep_aspect=True))
    assert [b[-2:] for b in model.batches] == [(128, 96), (128, 128), (32, 128)]


def test_clamp_ab_limits_colour_to_the_lab_range():
    wild = torch.tensor([190.0, -175.0]).view(1, 2, 1, 1).expand(1, 2, 64, 64)
    image = torch.full((1, 32, 32, 3), 0.5)
    clamped = colorize(image, FakeColorizer(ab=wild), ColorizeOptions(input_size=64, clamp_ab=True))
    raw = colorize(image, FakeColorizer(ab=wild), ColorizeOptions(input_size=64, clamp_ab=False))
    big_l = lightness(image.movedim(-1, 1))
    in_range = lab_to_rgb(torch.cat([big_l, torch.full_like(big_l, 127.0), torch.full_like(big_l, -128.0)], 1))
    assert torch.allclose(clamped, in_range.movedim(1, -1), atol=1e-6)
    assert (clamped - raw).abs().max() > 10 / 255


def test_face_mask_gives_each_face_one_tone_and_leaves_the_rest_alone():
    size = 64
    ab = torch.zeros(1, 2, size, size)
    ab[:, 0], ab[:, 1] = 15.0, 20.0  # a plausible skin tone everywhere...
    ab[:, :, 20:26, 28:34] = torch.tensor([60.0, 30.0]).view(1, 2, 1, 1)  # ...a red nose
    ab[:, :, 12:18, 16:22] = torch.tensor([-5.0, -40.0]).view(1, 2, 1, 1)  # ...a blue cheek
    ab[:, :, :, 50:] = torch.tensor([-20.0, -30.0]).view(1, 2, 1, 1)  # background, outside the face
    image = torch.full((1, size, size, 3), 0.45)
    mask = torch.zeros(1, size, size)
    mask[:, 8:40, 10:42] = 1.0
    options = ColorizeOptions(input_size=size, ab_upsample="nearest")
    plain = colorize(image, FakeColorizer(ab=ab), options)
    toned = colorize(image, FakeColorizer(ab=ab), options, face_mask=mask)

    def ab_of(result: torch.Tensor) -> torch.Tensor:
        lab = cv2.cvtColor(result[0].numpy().astype(np.float32), cv2.COLOR_RGB2Lab)
        return torch.from_numpy(lab[..., 1:])

    face_before, face_after = ab_of(plain)[8:40, 10:42], ab_of(toned)[8:40, 10:42]
    assert face_after.reshape(-1, 2).std(0).max() < 0.35 * face_before.reshape(-1, 2).std(0).max()
    tone = face_after[16:32, 26:40].reshape(-1, 2).mean(0)  # far from the blemishes
    assert SKIN_A_RANGE[0] <= tone[0] <= SKIN_A_RANGE[1] and SKIN_B_RANGE[0] <= tone[1] <= SKIN_B_RANGE[1]
    nose = ab_of(toned)[20:26, 28:34].reshape(-1, 2).mean(0)
    assert nose[0] < 30, "the red nose is pulled to the face tone"
    assert torch.equal(toned[:, :, 52:], plain[:, :, 52:]), "pixels away from the mask do not change"


def test_face_mask_shapes_are_checked():
    with pytest.raises(ValueError, match="face_mask"):
        colorize(torch.rand(3, 16, 16, 3), FakeColorizer(), OFFICIAL, face_mask=torch.ones(2, 16, 16))
    one_for_all = colorize(torch.rand(2, 16, 16, 3), FakeColorizer(), OFFICIAL, face_mask=torch.ones(16, 16))
    assert one_for_all.shape == (2, 16, 16, 3)


def test_alpha_is_kept_and_single_channel_input_is_colorized():
    rgba = torch.rand(1, 20, 20, 4)
    out = colorize(rgba, FakeColorizer(), OFFICIAL)
    assert out.shape == (1, 20, 20, 4) and torch.equal(out[..., 3], rgba[..., 3])
    mono = colorize(torch.rand(1, 20, 20, 1), FakeColorizer(), OFFICIAL)
    assert mono.shape == (1, 20, 20, 3) and (mono[..., 0] - mono[..., 2]).abs().max() > 0.01
    with pytest.raises(ValueError, match="IMAGE"):
        colorize(torch.rand(20, 20, 3), FakeColorizer(), OFFICIAL)


def test_every_upsampler_keeps_the_photos_own_luminance():
    image = _to_image(_photo(90, 130, "photo"))
    model = FakeColorizer()
    for method in ("nearest", "bilinear", "guided"):
        out = colorize(image, model, ColorizeOptions(input_size=64, ab_upsample=method, clamp_ab=True))
        l_in, l_out = lightness(image.movedim(-1, 1)), lightness(out.movedim(-1, 1))
        assert (l_in - l_out).abs().mean() < 1.0, method  # only colour changes (gamut clipping aside)


def test_bf16_stays_close_to_fp32():
    model = shared_module("convnext-t")
    rgb = _to_image(_photo(64, 64, "photo")).movedim(-1, 1)
    with torch.inference_mode():
        fp32 = colorize_rgb(rgb, model, ColorizeOptions(input_size=64, precision="fp32"))
        bf16 = colorize_rgb(rgb, model, ColorizeOptions(input_size=64, precision="bf16"))
    levels = (fp32 - bf16).abs() * 255
    assert levels.mean() < 3.0 and levels.max() < 40, (levels.mean(), levels.max())
