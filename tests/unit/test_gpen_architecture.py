"""The GPEN generator: released key layout, configuration inference, strict loading, numerics."""

from __future__ import annotations

import math

import pytest
import torch
from harness.gpen_checkpoints import (
    CONSTRUCTOR,
    PARAM_COUNTS,
    SIZES,
    TENSOR_COUNTS,
    expected_layout,
    random_state_dict,
    write_checkpoint,
)
from restoration_governor.restoration.gpen.loading import (
    GPENCheckpointError,
    infer_config,
    load_generator,
    load_generator_file,
    looks_like_gpen_file,
    read_state_dict,
)
from restoration_governor.restoration.gpen.network import GPEN, RELEASED_CONFIGS
from restoration_governor.restoration.gpen.ops import Upsample, make_fir_kernel, upfirdn2d
from restoration_governor.restoration.gpen.stylegan import ModulatedConv2d

torch.set_num_threads(2)


def meta_state_dict(size: int, **config) -> dict[str, torch.Tensor]:
    """Shapes only: enough for layout and inference checks of the big sizes without allocating them."""
    return {k: torch.empty(shape, device="meta") for k, shape in expected_layout(size, **config).items()}


@pytest.fixture(scope="module")
def sd256() -> dict[str, torch.Tensor]:
    return random_state_dict(256, seed=1)


@pytest.fixture(scope="module")
def gpen256(sd256) -> GPEN:
    return load_generator(sd256, "GPEN-BFR-256.pth")


# -- layout ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_the_layout_table_has_the_documented_totals(size):
    """The test's own table (written from the release description) against the published counts."""
    layout = expected_layout(size)
    assert len(layout) == TENSOR_COUNTS[size]
    assert sum(math.prod(shape) for k, shape in layout.items() if not k.endswith(".kernel")) == PARAM_COUNTS[size]


@pytest.mark.parametrize("size", SIZES)
def test_state_dict_layout_matches_the_released_files(size):
    with torch.device("meta"):
        model = GPEN(RELEASED_CONFIGS[size])
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_layout(size)
    assert own == expected
    assert len(own) == TENSOR_COUNTS[size]
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[size]
    kernels = {k for k in own if k.endswith(".kernel")}
    assert kernels == {name for name, _ in model.named_buffers()}, "blur kernels are the only (persistent) buffers"
    assert len(kernels) == (int(math.log2(size)) - 2) * 3  # encoder blur, upsampling conv blur, RGB upsample


def test_blur_kernels_are_the_normalised_1331_filter():
    model = GPEN(RELEASED_CONFIGS[256])
    sd = model.state_dict()
    base = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = base[:, None] * base[None, :] / 64
    assert torch.allclose(sd["ecd1.0.0.kernel"], k)
    assert torch.allclose(sd["generator.convs.0.conv.blur.kernel"], 4 * k)
    assert torch.allclose(sd["generator.to_rgbs.0.upsample.kernel"], 4 * k)


# -- configuration inference and strict loading --------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_configuration_is_inferred_from_the_tensors(size):
    config = infer_config(meta_state_dict(size), f"GPEN-BFR-{size}.pth")
    cm, narrow = CONSTRUCTOR[size]
    assert (config.size, config.channel_multiplier, config.narrow, config.style_dim, config.n_mlp) == (
        size, cm, narrow, 512, 8)


@pytest.mark.parametrize("size", [1024, 2048])
def test_large_sizes_load_strictly_without_allocating(size):
    model = load_generator(meta_state_dict(size), f"GPEN-BFR-{size}.pth")
    assert model.config.size == size
    assert set(model.state_dict()) == set(expected_layout(size))


def test_file_round_trip_loads_every_tensor_exactly(tmp_path, sd256):
    path = tmp_path / "GPEN-BFR-256.pth"
    torch.save(sd256, path)
    model = load_generator_file(path)
    loaded = model.state_dict()
    assert set(loaded) == set(sd256)
    assert all(torch.equal(loaded[k], sd256[k]) for k in sd256)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_safetensors_and_training_checkpoints_are_read(tmp_path, sd256):
    from safetensors.torch import save_file

    save_file(sd256, tmp_path / "g.safetensors")
    assert load_generator(read_state_dict(tmp_path / "g.safetensors"), "g").config.size == 256
    torch.save({"g_ema": sd256, "d": {"x": torch.zeros(1)}}, tmp_path / "train.pt")
    assert set(read_state_dict(tmp_path / "train.pt")) == set(sd256)


@pytest.mark.parametrize(
    ("size", "config", "message"),
    [
        (256, {"channel_multiplier": 2}, "channel_multiplier 2"),
        (512, {"narrow": 0.5}, "narrow 0.5"),
        (512, {"channel_multiplier": 1}, "matches no released GPEN configuration"),
    ],
)
def test_files_of_unreleased_configurations_are_refused(size, config, message):
    with pytest.raises(GPENCheckpointError, match=message):
        load_generator(meta_state_dict(size, **config), "odd.pth")


def _damaged(sd: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    if how == "missing":
        del sd["generator.convs.3.noise.weight"]
    elif how == "missing-buffer":
        del sd["generator.to_rgbs.2.upsample.kernel"]
    elif how == "extra":
        sd["generator.convs.99.noise.weight"] = torch.zeros(1)
    elif how == "shape":
        sd["generator.to_rgbs.1.bias"] = torch.zeros(1, 4, 1, 1)
    return sd


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"1 missing tensor\(s\): generator\.convs\.3\.noise\.weight"),
        ("missing-buffer", r"missing tensor\(s\): generator\.to_rgbs\.2\.upsample\.kernel"),
        ("extra", r"unexpected tensor\(s\): generator\.convs\.99\.noise\.weight"),
        ("shape", r"wrong shape\(s\): generator\.to_rgbs\.1\.bias \(1, 4, 1, 1\) \(expected \(1, 3, 1, 1\)\)"),
    ],
)
def test_strict_loading_names_what_is_wrong(how, message):
    with pytest.raises(GPENCheckpointError, match="broken.pth does not match the GPEN 256") as info:
        load_generator(_damaged(meta_state_dict(256), how), "broken.pth")
    assert info.match(message)


def test_other_files_are_refused_with_the_file_name(tmp_path):
    with pytest.raises(GPENCheckpointError, match=r"codeformer\.pth is not a GPEN generator"):
        load_generator({"encoder.conv_in.weight": torch.zeros(1)}, "codeformer.pth")
    (tmp_path / "page.pth").write_text("<html>404 Not Found</html>")
    with pytest.raises(GPENCheckpointError, match=r"page\.pth is not a PyTorch weights file \(it starts with '<html>404 Not Fo'"):
        read_state_dict(tmp_path / "page.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(GPENCheckpointError, match=r"list\.pth does not contain a model state dict \(found list\)"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"ecd0.0.0.weight": "not a tensor"}, tmp_path / "strings.pth")
    with pytest.raises(GPENCheckpointError, match=r"strings\.pth does not contain a model state dict: \['ecd0\.0\.0\.weight'\] are not tensors"):
        read_state_dict(tmp_path / "strings.pth")


def test_gpen_files_are_told_apart_cheaply(tmp_path):
    from safetensors.torch import save_file

    gpen = write_checkpoint(tmp_path / "anything.pth", 256)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    save_file({"final_linear.0.weight": torch.zeros(1), "generator.to_rgb1.conv.weight": torch.zeros(1)},
              tmp_path / "gpen.safetensors")
    legacy = tmp_path / "legacy.pth"
    torch.save({"x": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert looks_like_gpen_file(gpen) is True
    assert looks_like_gpen_file(other) is False
    assert looks_like_gpen_file(tmp_path / "gpen.safetensors") is True
    assert looks_like_gpen_file(legacy) is None  # cannot tell without unpickling: callers judge by name


# -- numerics ----------------------------------------------------------------------------------------

def test_upfirdn2d_filters_resamples_and_keeps_gain():
    asymmetric = torch.arange(16.0).reshape(4, 4)
    impulse = torch.zeros(1, 1, 7, 7)
    impulse[0, 0, 3, 3] = 1.0
    response = upfirdn2d(impulse, asymmetric, pad=(1, 2))
    assert response.shape == (1, 1, 7, 7)
    assert torch.equal(response[0, 0, 1:5, 1:5], asymmetric), "a true convolution copies the kernel"
    k = make_fir_kernel([1, 3, 3, 1])
    flat = torch.full((2, 3, 8, 8), 0.7)
    up = Upsample([1, 3, 3, 1])(flat)
    assert up.shape == (2, 3, 16, 16)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7), atol=1e-6)
    down = upfirdn2d(flat, k, down=2, pad=(1, 1))
    assert down.shape == (2, 3, 4, 4)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.full((2, 3, 2, 2), 0.7), atol=1e-6)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_equals_per_sample_modulated_weights(upsample):
    """Our shared-weight form vs the textbook one: weights scaled by the style, demodulated, per sample."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, 8, upsample=upsample)
    x, style = torch.randn(3, 6, 9, 9), torch.randn(3, 8)
    ours = conv(x, style)
    s = conv.modulation(style)
    ref = []
    for b in range(3):
        w = conv.scale * conv.weight[0] * s[b][None, :, None, None]
        w = w * torch.rsqrt(w.pow(2).sum(dim=(1, 2, 3)) + 1e-8)[:, None, None, None]
        if upsample:
            y = torch.nn.functional.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2)
            ref.append(conv.blur(y))
        else:
            ref.append(torch.nn.functional.conv2d(x[b:b + 1], w, padding=1))
    ref_t = torch.cat(ref)
    assert ours.shape == ref_t.shape == ((3, 5, 18, 18) if upsample else (3, 5, 9, 9))
    torch.testing.assert_close(ours, ref_t, atol=1e-5, rtol=1e-5)


def _faces(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@torch.no_grad()
def test_forward_is_deterministic_and_batch_equals_single_at_256(gpen256):
    x = _faces(2, 256, seed=3)
    batch = gpen256(x)
    assert batch.shape == (2, 3, 256, 256) and torch.isfinite(batch).all()
    first = gpen256(x[:1])
    assert torch.equal(first, gpen256(x[:1]))
    torch.testing.assert_close(batch[:1], first, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch[1:], gpen256(x[1:]), atol=1e-4, rtol=0)
    assert (batch[0] - batch[1]).abs().mean() > 1e-2, "different faces give different outputs"


@torch.no_grad()
def test_encoder_features_reach_the_generator(sd256, gpen256):
    """With the feature weights at 0 (a fresh model's value) only the latent would matter."""
    x = _faces(1, 256, seed=4)
    muted = dict(sd256)
    for k in muted:
        if k.endswith("noise.weight"):
            muted[k] = torch.zeros(1)
    without = load_generator(muted, "muted")(x)
    assert (gpen256(x) - without).abs().mean() > 1e-2


@pytest.mark.slow
@torch.no_grad()
def test_forward_at_512_batch_equals_single():
    model = load_generator(random_state_dict(512, seed=2), "GPEN-BFR-512.pth")
    x = _faces(2, 512, seed=5)
    batch = model(x)
    single = model(x[1:])
    assert batch.shape == (2, 3, 512, 512) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[1:], single, atol=1e-4, rtol=0)


def test_wrong_input_size_is_a_clear_error(gpen256):
    with pytest.raises(ValueError, match=r"GPEN 256 .* expects 256×256 input, got \(200, 256\)"):
        gpen256(torch.zeros(1, 3, 200, 256))
