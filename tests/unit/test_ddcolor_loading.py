"""Loading DDColor checkpoints: both released layouts, the release container, clear refusals."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
import torch
from harness.ddcolor_checkpoints import (
    AB_TARGET,
    ENCODER_DEPTHS,
    TENSOR_COUNT,
    build_state_dict,
    checkpoint_file,
    save_release_format,
    shared_module,
)
from restoration_governor.restoration.ddcolor.loading import DDColorLoadError, load_ddcolor, read_state_dict


def _expected_layout(encoder: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in build_state_dict(encoder).items()}


def test_tiny_release_file_is_detected_and_loads_strictly():
    path = checkpoint_file("convnext-t")  # {'params': sd} with the two dummy head_cls keys
    assert set(torch.load(path, weights_only=True)) == {"params"}
    loaded = load_ddcolor(path)
    assert loaded.encoder == "convnext-t"
    assert round(loaded.parameters / 1e6, 1) == 55.0
    state = {k: tuple(v.shape) for k, v in loaded.module.state_dict().items()}
    assert len(state) == TENSOR_COUNT["convnext-t"]
    assert state == _expected_layout("convnext-t")
    # the weights are the file's, not the constructor's random init
    reference = shared_module("convnext-t").state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.module.state_dict().items())
    assert not loaded.module.training


def test_large_release_layout_is_detected():
    # the only test that needs the 912 MB convnext-l layout (built once per session)
    loaded = load_ddcolor(checkpoint_file("convnext-l"))
    assert loaded.encoder == "convnext-l"
    assert len(loaded.module.state_dict()) == TENSOR_COUNT["convnext-l"]
    assert tuple(loaded.module.state_dict()["decoder.layers.0.shuf.conv.0.weight_orig"].shape) == (2048, 1536, 1, 1)
    assert len(loaded.module.encoder.arch.stages[2]) == ENCODER_DEPTHS["convnext-l"][2]


def test_raw_state_dict_and_safetensors_read_like_the_release(tmp_path):
    from safetensors.torch import save_file

    release = read_state_dict(checkpoint_file("convnext-t"))
    sd = build_state_dict("convnext-t")
    raw = tmp_path / "raw.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, raw)  # DataParallel-style prefix, no container
    st = tmp_path / "converted.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    for path in (raw, st):
        other = read_state_dict(path)
        assert other.keys() == release.keys()
        assert all(torch.equal(other[k], release[k]) for k in release)


def test_head_cls_keys_are_dropped_and_nothing_else(tmp_path):
    path = save_release_format(build_state_dict("convnext-t", head_cls=True), tmp_path / "with_head.pth")
    sd = read_state_dict(path)
    assert not any("head_cls" in k for k in sd)
    assert len(sd) == TENSOR_COUNT["convnext-t"]


def test_builder_makes_every_path_matter():
    model = shared_module("convnext-t")
    for module in model.modules():
        if hasattr(module, "weight_u"):
            w = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
            sigma = module.weight_u @ w @ module.weight_v
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            assert sigma == pytest.approx(torch.linalg.eigvalsh(gram).max().sqrt().item(), rel=1e-3)
    gammas = torch.cat([b.gamma for stage in model.encoder.arch.stages for b in stage])
    assert 0.05 <= gammas.min() and gammas.max() <= 0.25
    with torch.no_grad():
        ab = model(torch.rand(1, 1, 64, 64).expand(1, 3, 64, 64))
    spread = torch.quantile(ab.abs().flatten(), 0.99).item()
    assert 0.6 * AB_TARGET < spread < 1.3 * AB_TARGET


def _expect_error(path, *fragments):
    with pytest.raises(DDColorLoadError) as info:
        load_ddcolor(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_truncated_file_is_refused_with_its_name(tmp_path):
    source = checkpoint_file("convnext-t")
    truncated = tmp_path / "ddcolor_paper_tiny.pth"
    with open(source, "rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    _expect_error(truncated, "ddcolor_paper_tiny.pth", "truncated", "5,000,000 bytes", "downloaded again")


def test_missing_and_empty_files_are_refused(tmp_path):
    _expect_error(tmp_path / "nothing.pth", "nothing.pth", "does not exist")
    (tmp_path / "empty.pth").write_bytes(b"")
    _expect_error(tmp_path / "empty.pth", "empty.pth", "empty")


def test_another_architecture_is_named(tmp_path):
    from spandrel.architectures.Compact import Compact

    path = tmp_path / "upscaler.pth"
    torch.save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict(), path)
    _expect_error(path, "upscaler.pth", "not a DDColor checkpoint", "RealESRGAN Compact")


def test_incomplete_ddcolor_is_refused(tmp_path):
    sd = build_state_dict("convnext-t")
    del sd["decoder.color_decoder.query_feat.weight"]  # not among the detection keys: caught by the strict load
    path = save_release_format(sd, tmp_path / "partial.pth")
    _expect_error(path, "partial.pth", "do not fit", "missing keys", "unexpected keys")
    sd = build_state_dict("convnext-t")
    del sd["refine_net.0.0.weight_orig"]
    path = save_release_format(sd, tmp_path / "no_refine.pth")
    _expect_error(path, "no_refine.pth", "incomplete", "refine_net.0.0.weight_orig")


def test_mismatched_shapes_are_refused(tmp_path):
    sd = build_state_dict("convnext-t")
    sd["decoder.layers.1.conv.0.weight_orig"] = torch.zeros(512, 700, 3, 3)
    path = save_release_format(sd, tmp_path / "mismatch.pth")
    _expect_error(path, "mismatch.pth", "do not fit", "size mismatch")


def test_pickled_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": {"x": PurePosixPath("/etc")}}, path)  # a class instance: weights_only refuses it
    _expect_error(path, "evil.pth", "Python objects other than tensors")


def test_non_state_dict_content_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    _expect_error(path, "list.pth", "does not contain a model state dict")


def test_legacy_non_zip_checkpoints_are_read(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"params": {"refine_net.0.0.bias": torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_state_dict(path)["refine_net.0.0.bias"], torch.ones(2))
