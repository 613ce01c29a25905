"""Presets, size rounding and precision: what the Colorize node's widgets turn into."""

from __future__ import annotations

import pytest
from restoration_governor.restoration.ddcolor.options import (
    ColorizeOptions,
    model_resolution,
    resolve_options,
    resolve_precision,
    round_input_size,
)


def _resolve(**overrides):
    inputs = dict(preset="custom", input_size=512, ab_upsample="nearest", keep_aspect=False, clamp_ab=False,
                  precision="fp32")
    inputs.update(overrides)
    return resolve_options(**inputs)


def test_presets_set_the_size_and_building_uses_guided_upsampling():
    person, notes = _resolve(preset="person", input_size=96, ab_upsample="bilinear")
    assert (person.input_size, person.ab_upsample, notes) == (512, "bilinear", [])
    building, notes = _resolve(preset="building", input_size=96, ab_upsample="nearest")
    assert (building.input_size, building.ab_upsample) == (1024, "guided")
    assert notes == ["preset building uses ab_upsample=guided (the widget's nearest applies to person and custom)"]
    custom, notes = _resolve(preset="custom", input_size=768, ab_upsample="bilinear", keep_aspect=True, clamp_ab=True)
    assert custom == ColorizeOptions(768, "bilinear", True, True, "fp32") and notes == []


@pytest.mark.parametrize(("asked", "used"), [(460, 448), (680, 672), (500, 512), (1280, 1280), (10, 32), (9999, 4096)])
def test_custom_sizes_are_rounded_to_multiples_of_32_and_the_user_is_told(asked, used):
    options, notes = _resolve(input_size=asked)
    assert options.input_size == used == round_input_size(asked)
    assert notes == ([] if asked == used else
                     [f"input_size {asked} is not a multiple of 32 in 32..4096: using {used}"])


def test_keep_aspect_puts_the_long_side_at_the_size():
    assert model_resolution(300, 200, 512, keep_aspect=False) == (512, 512)
    assert model_resolution(300, 200, 512, keep_aspect=True) == (512, 352)
    assert model_resolution(1080, 1920, 1024, keep_aspect=True) == (576, 1024)
    assert model_resolution(10, 1000, 512, keep_aspect=True) == (32, 512)


def test_precision_auto_means_bf16_only_on_capable_cuda_gpus():
    assert resolve_precision("auto", "cuda", bf16_supported=True) == "bf16"
    assert resolve_precision("auto", "cuda", bf16_supported=False) == "fp32"
    assert resolve_precision("auto", "cpu", bf16_supported=True) == "fp32"
    assert resolve_precision("bf16", "cpu", bf16_supported=False) == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cuda", bf16_supported=True)


def test_invalid_values_are_named():
    with pytest.raises(ValueError, match="lanczos"):
        ColorizeOptions(ab_upsample="lanczos")
    with pytest.raises(ValueError, match="500"):
        ColorizeOptions(input_size=500)
    with pytest.raises(ValueError, match="portrait"):
        _resolve(preset="portrait")
