"""Damaged and wrong weight files (issue 15.4) through the pack's one reader (restoration/weights.py)."""

from __future__ import annotations

import pytest
import torch
from harness.ddcolor_checkpoints import build_state_dict, checkpoint_file, save_release_format
from harness.gpen_checkpoints import detector_state_dict, parser_state_dict, write_checkpoint
from restoration_governor.restoration.ddcolor.loading import DDColorLoadError, load_ddcolor
from restoration_governor.restoration.gpen.detection import load_detector_file
from restoration_governor.restoration.gpen.loading import GPENCheckpointError, load_generator_file
from restoration_governor.restoration.gpen.parsing import load_parser_file
from restoration_governor.restoration.weights import WeightFileError, read_weights


def _cut(source, dest, share: float = 0.5):
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * share)])
    return dest


@pytest.fixture(scope="module")
def helper_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("helpers")
    detector, parser = folder / "detection_Resnet50_Final.pth", folder / "parsing_parsenet.pth"
    torch.save(detector_state_dict(), detector)
    torch.save(parser_state_dict(), parser)
    return detector, parser


@pytest.fixture(scope="module")
def gpen_file(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("gpen") / "GPEN-BFR-256.pth", 256)


@pytest.mark.parametrize("container", ["params", "params_ema", "g_ema", "state_dict", "model", None])
def test_every_container_and_the_dataparallel_prefix_are_opened(tmp_path, container):
    tensors = {"module.a.weight": torch.ones(2), "module.b.bias": torch.zeros(1)}
    torch.save({container: tensors} if container else tensors, tmp_path / "w.pth")
    assert set(read_weights(tmp_path / "w.pth")) == {"a.weight", "b.bias"}


def test_missing_and_empty_files_name_the_file(tmp_path):
    with pytest.raises(WeightFileError, match="nothing.pth does not exist"):
        read_weights(tmp_path / "nothing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightFileError, match="empty.pth is empty .*delete it"):
        read_weights(tmp_path / "empty.pth")


def test_a_ddcolor_file_cut_in_half(tmp_path):
    cut = _cut(checkpoint_file("convnext-t"), tmp_path / "ddcolor_paper_tiny.pth")
    with pytest.raises(DDColorLoadError) as info:
        load_ddcolor(cut)
    message = str(info.value)
    assert message.startswith("ddcolor_paper_tiny.pth is truncated") and "downloaded again" in message


def test_a_ddcolor_file_with_one_unknown_key(tmp_path):
    sd = build_state_dict("convnext-t")
    sd["decoder.extra_layer.weight"] = torch.zeros(3)
    path = save_release_format(sd, tmp_path / "extra.pth")
    with pytest.raises(DDColorLoadError, match=r"extra\.pth .*1 unexpected keys, e\.g\. decoder\.extra_layer\.weight"):
        load_ddcolor(path)


@pytest.mark.parametrize("which", ["gpen", "detector", "parser"])
def test_other_family_files_in_the_ddcolor_folder_say_what_and_where(which, gpen_file, helper_files):
    path = {"gpen": gpen_file, "detector": helper_files[0], "parser": helper_files[1]}[which]
    expected = {
        "gpen": "is a GPEN face-restoration generator, not a DDColor colorization checkpoint: move it to models/gpen",
        "detector": "is a RetinaFace face detector (GPEN's detection network), not a DDColor colorization "
                    "checkpoint: move it to models/facedetection",
        "parser": "is a ParseNet face parser (GPEN's face-mask network), not a DDColor colorization "
                  "checkpoint: move it to models/facedetection",
    }[which]
    with pytest.raises(DDColorLoadError) as info:
        load_ddcolor(path)
    assert str(info.value) == f"{path.name} {expected} (this loader reads models/ddcolor)"


def test_a_ddcolor_file_in_the_gpen_folder(tmp_path):
    path = save_release_format(build_state_dict("convnext-t"), tmp_path / "ddcolor_paper_tiny.pth")
    with pytest.raises(GPENCheckpointError, match=r"ddcolor_paper_tiny\.pth is a DDColor colorization checkpoint, "
                                                  r"not a GPEN face-restoration generator: move it to models/ddcolor"):
        load_generator_file(path)


def test_a_gpen_file_cut_short(tmp_path, gpen_file):
    cut = _cut(gpen_file, tmp_path / "GPEN-BFR-256.pth", 0.4)
    with pytest.raises(GPENCheckpointError, match=r"GPEN-BFR-256\.pth is truncated .*delete it"):
        load_generator_file(cut)


@pytest.mark.parametrize("which", [0, 1])
def test_detector_or_parser_cut_short(tmp_path, helper_files, which):
    source = helper_files[which]
    cut = _cut(source, tmp_path / source.name, 0.6)
    load = (load_detector_file, load_parser_file)[which]
    with pytest.raises(WeightFileError, match=rf"{source.name} is truncated .*delete it"):
        load(cut)


def test_detector_and_parser_swapped(tmp_path, helper_files):
    detector, parser = helper_files
    with pytest.raises(WeightFileError, match="is a ParseNet face parser .*, not a RetinaFace face detector"):
        load_detector_file(parser)
    with pytest.raises(WeightFileError, match="is a RetinaFace face detector .*, not a ParseNet face parser"):
        load_parser_file(detector)


def test_a_detector_with_one_key_missing_names_it(tmp_path):
    sd = detector_state_dict()
    del sd["ClassHead.0.conv1x1.bias"]
    torch.save(sd, tmp_path / "detection_Resnet50_Final.pth")
    with pytest.raises(WeightFileError, match=r"1 missing tensor\(s\): ClassHead\.0\.conv1x1\.bias"):
        load_detector_file(tmp_path / "detection_Resnet50_Final.pth")
