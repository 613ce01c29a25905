"""Edge-aware ab upsampling bleeds less colour across edges than the official nearest (and bilinear)."""

from __future__ import annotations

import pytest
import torch
from restoration_governor.restoration.ddcolor.edge_chart import bleed_report, edge_chart
from restoration_governor.restoration.ddcolor.upsample import upsample_ab


@pytest.mark.parametrize(("grain", "ratio"), [(0.0, 0.6), (3.0, 0.8)])
def test_guided_bleeds_less_than_nearest_and_bilinear_on_the_edge_chart(grain, ratio):
    report = bleed_report(edge_chart(height=480, width=720, grain=grain), model_size=(256, 256))
    near_edges = {method: r["bleed_near_edges"] for method, r in report.items()}
    assert near_edges["guided"] < ratio * near_edges["nearest"], near_edges
    assert near_edges["guided"] < ratio * near_edges["bilinear"], near_edges
    # and it does not buy that with colour damage inside the flat regions
    assert report["guided"]["error_flat"] < 0.5, report


def test_nearest_is_the_official_call():
    ab = torch.randn(1, 2, 8, 8)
    expected = torch.nn.functional.interpolate(ab, size=(20, 30))
    assert torch.equal(upsample_ab(ab, (20, 30), "nearest"), expected)


def test_guided_reproduces_ab_that_is_a_linear_function_of_l():
    torch.manual_seed(0)
    big_l = torch.rand(1, 1, 64, 96) * 100
    small_l = torch.nn.functional.interpolate(big_l, size=(16, 24), mode="bilinear", align_corners=False)
    ab_small = torch.cat([0.5 * small_l - 10, -0.3 * small_l + 20], dim=1)
    ab_full = upsample_ab(ab_small, (64, 96), "guided", guide_small=small_l, guide_full=big_l)
    expected = torch.cat([0.5 * big_l - 10, -0.3 * big_l + 20], dim=1)
    assert (ab_full - expected).abs().mean() < 2.0  # bilinear of the same ab would be far off at L edges
    bilinear = upsample_ab(ab_small, (64, 96), "bilinear")
    assert (bilinear - expected).abs().mean() > 3 * (ab_full - expected).abs().mean()


@pytest.mark.parametrize("method", ["nearest", "bilinear", "guided"])
def test_every_method_handles_shrinking_and_tiny_inputs(method):
    small_l = torch.rand(2, 1, 4, 4) * 100
    big_l = torch.rand(2, 1, 3, 5) * 100
    out = upsample_ab(torch.randn(2, 2, 4, 4), (3, 5), method, guide_small=small_l, guide_full=big_l)
    assert out.shape == (2, 2, 3, 5) and torch.isfinite(out).all()


def test_unknown_method_is_named_in_the_error():
    with pytest.raises(ValueError, match="lanczos"):
        upsample_ab(torch.zeros(1, 2, 4, 4), (8, 8), "lanczos")
