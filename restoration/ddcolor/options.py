"""What the DDColor Colorize node's widgets mean, resolved into one settings object.

Presets: ``person`` runs the model at 512 (faces get a consistent tone where a face mask is
connected); ``building`` runs it at 1024 with guided ab upsampling, so brick and window edges keep
their colour; ``custom`` uses ``input_size``. The model needs sides that are multiples of 32, so
other sizes are rounded and the rounding is reported back to the user.
"""

from __future__ import annotations

from dataclasses import dataclass

from .upsample import AB_UPSAMPLE_METHODS

PRESETS: dict[str, dict] = {
    "person": {"input_size": 512},
    "building": {"input_size": 1024, "ab_upsample": "guided"},
    "custom": {},
}
PRECISIONS = ("auto", "fp32", "bf16")
SIZE_STEP = 32
MIN_SIZE = 32
MAX_SIZE = 4096


@dataclass(frozen=True)
class ColorizeOptions:
    """Everything the pipeline needs besides the images and the model."""

    input_size: int = 512
    ab_upsample: str = "nearest"
    keep_aspect: bool = False
    clamp_ab: bool = False
    precision: str = "fp32"  # "fp32" | "bf16" (resolved: never "auto")

    def __post_init__(self) -> None:
        if self.input_size % SIZE_STEP or not MIN_SIZE <= self.input_size <= MAX_SIZE:
            raise ValueError(f"input_size {self.input_size} must be a multiple of {SIZE_STEP} in "
                             f"{MIN_SIZE}..{MAX_SIZE}")
        if self.ab_upsample not in AB_UPSAMPLE_METHODS:
            raise ValueError(f"ab_upsample {self.ab_upsample!r} is not one of {', '.join(AB_UPSAMPLE_METHODS)}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r} is not 'fp32' or 'bf16'")


def round_input_size(value: int) -> int:
    """The nearest multiple of 32 within the model's range."""
    rounded = int(round(value / SIZE_STEP)) * SIZE_STEP
    return min(MAX_SIZE, max(MIN_SIZE, rounded))


def model_resolution(height: int, width: int, size: int, keep_aspect: bool) -> tuple[int, int]:
    """(h, w) the model runs at: ``size`` x ``size`` (official), or the long side = ``size``."""
    if not keep_aspect:
        return size, size
    if height >= width:
        short = round_input_size(size * width / height)
        return size, min(short, size)
    short = round_input_size(size * height / width)
    return min(short, size), size


def resolve_precision(precision: str, device_type: str, bf16_supported: bool) -> str:
    """``auto`` = bf16 on a CUDA GPU that runs it natively (Ampere or newer), fp32 everywhere else."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device_type == "cuda" and bf16_supported else "fp32"
    return precision


def resolve_options(
    *,
    preset: str,
    input_size: int,
    ab_upsample: str,
    keep_aspect: bool,
    clamp_ab: bool,
    precision: str,
    device_type: str = "cpu",
    bf16_supported: bool = False,
) -> tuple[ColorizeOptions, list[str]]:
    """The effective options for a preset plus the widgets, and notes for anything overridden or rounded."""
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    notes: list[str] = []
    overrides = PRESETS[preset]
    size = overrides.get("input_size", input_size)
    if preset == "custom":
        rounded = round_input_size(input_size)
        if rounded != input_size:
            notes.append(f"input_size {input_size} is not a multiple of {SIZE_STEP} in {MIN_SIZE}..{MAX_SIZE}: "
                         f"using {rounded}")
        size = rounded
    upsample = overrides.get("ab_upsample", ab_upsample)
    if upsample != ab_upsample:
        notes.append(f"preset {preset} uses ab_upsample={upsample} (the widget's {ab_upsample} applies to "
                     f"person and custom)")
    options = ColorizeOptions(input_size=size, ab_upsample=upsample, keep_aspect=keep_aspect, clamp_ab=clamp_ab,
                              precision=resolve_precision(precision, device_type, bf16_supported))
    return options, notes
