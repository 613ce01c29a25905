"""Which GPEN files the loader offers, where it finds them, and first-use downloads (no ComfyUI needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from harness.http_fixture import FileServer, ServedFile
from restoration_governor.nodes import gpen as gpen_nodes
from restoration_governor.restoration.gpen import files

EXTENSIONS = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")


class FakeFolderPaths:
    """The slice of ComfyUI's ``folder_paths`` the nodes use, over real directories."""

    def __init__(self, root: Path) -> None:
        self.folders = {name: [root / name] for name in ("gpen", "facerestore_models", "facedetection")}
        for paths in self.folders.values():
            paths[0].mkdir(parents=True)

    def get_folder_paths(self, name: str) -> list[str]:
        return [str(p) for p in self.folders[name]]

    def get_filename_list(self, name: str) -> list[str]:
        return sorted(p.name for d in self.folders[name] for p in d.iterdir() if p.suffix in EXTENSIONS)

    def get_full_path(self, name: str, filename: str) -> str | None:
        for d in self.folders[name]:
            if (d / filename).is_file():
                return str(d / filename)
        return None


class FakeProgressBar:
    updates: list[tuple[int, int]] = []

    def __init__(self, total: int) -> None:
        self.total = total

    def update_absolute(self, value: int, total: int | None = None) -> None:
        FakeProgressBar.updates.append((value, total or self.total))


@pytest.fixture
def folders(tmp_path, monkeypatch) -> FakeFolderPaths:
    fake = FakeFolderPaths(tmp_path / "models")
    monkeypatch.setattr(gpen_nodes.comfy_bridge, "folder_paths", lambda: fake)
    monkeypatch.setattr(gpen_nodes.comfy_bridge, "comfy_utils", lambda: type("U", (), {"ProgressBar": FakeProgressBar}))
    FakeProgressBar.updates = []
    return fake


GPEN_KEYS = {"final_linear.0.weight": torch.zeros(1), "generator.to_rgb1.conv.weight": torch.zeros(1)}


def test_listing_offers_gpen_files_from_both_folders_and_the_official_names(folders):
    gpen_dir, shared = folders.folders["gpen"][0], folders.folders["facerestore_models"][0]
    torch.save(GPEN_KEYS, gpen_dir / "GPEN-BFR-1024.pth")
    torch.save(GPEN_KEYS, shared / "portrait-v2.pth")  # GPEN-shaped, any name
    torch.save({"quantize.embedding.weight": torch.zeros(1)}, shared / "codeformer-v0.1.0.pth")
    torch.save({"x": torch.zeros(1)}, shared / "GPEN-legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"x": torch.zeros(1)}, shared / "other-legacy.pth", _use_new_zipfile_serialization=False)
    names = gpen_nodes.list_generator_files()
    assert names == ["GPEN-BFR-1024.pth", "GPEN-legacy.pth", "portrait-v2.pth", "GPEN-BFR-512.pth",
                     "GPEN-BFR-256.pth"]


def test_an_official_name_on_disk_is_used_without_download(folders, monkeypatch):
    shared = folders.folders["facerestore_models"][0]
    torch.save(GPEN_KEYS, shared / "GPEN-BFR-512.pth")
    monkeypatch.setattr(gpen_nodes, "download_missing", lambda *a, **k: pytest.fail("nothing to download"))
    assert gpen_nodes.resolve_generator("GPEN-BFR-512.pth") == str(shared / "GPEN-BFR-512.pth")
    assert gpen_nodes.list_generator_files() == ["GPEN-BFR-512.pth", "GPEN-BFR-256.pth"]


def test_a_missing_official_generator_is_downloaded_into_models_gpen(folders, monkeypatch):
    body = b"\x00" * 4096
    with FileServer() as server:
        server.files["/GPEN-BFR-256.pth"] = ServedFile(body)
        remote = dataclasses.replace(files.OFFICIAL_GENERATORS["GPEN-BFR-256.pth"],
                                     url=server.url("/GPEN-BFR-256.pth"), min_size=1)
        monkeypatch.setitem(files.OFFICIAL_GENERATORS, "GPEN-BFR-256.pth", remote)
        path = Path(gpen_nodes.resolve_generator("GPEN-BFR-256.pth"))
    assert path == folders.folders["gpen"][0] / "GPEN-BFR-256.pth"
    assert path.read_bytes() == body
    assert FakeProgressBar.updates[-1] == (4096, 4096), "the node's progress bar follows the download"


def test_an_unknown_missing_name_is_a_clear_error(folders):
    with pytest.raises(FileNotFoundError, match=r"GPEN model 'mine\.pth' was not found in .*gpen.*facerestore"):
        gpen_nodes.resolve_generator("mine.pth")


def test_helper_networks_accept_either_name_and_download_the_official_one(folders, monkeypatch):
    helpers = folders.folders["facedetection"][0]
    (helpers / "RetinaFace-R50.pth").write_bytes(b"gpen's name for the detector")
    assert gpen_nodes.resolve_helper(files.DETECTOR_NAMES, files.DETECTOR) == str(helpers / "RetinaFace-R50.pth")
    (helpers / "detection_Resnet50_Final.pth").write_bytes(b"facexlib's name")
    assert gpen_nodes.resolve_helper(files.DETECTOR_NAMES, files.DETECTOR).endswith("detection_Resnet50_Final.pth")
    with FileServer() as server:
        server.files["/parsing_parsenet.pth"] = ServedFile(b"p" * 100)
        remote = dataclasses.replace(files.PARSER, url=server.url("/parsing_parsenet.pth"), min_size=1)
        path = gpen_nodes.resolve_helper(files.PARSER_NAMES, remote)
    assert path == str(helpers / "parsing_parsenet.pth")


def test_official_urls_are_the_published_ones():
    host = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/"
    assert {n: r.url for n, r in files.OFFICIAL_GENERATORS.items()} == {
        "GPEN-BFR-512.pth": host + "GPEN-BFR-512.pth", "GPEN-BFR-256.pth": host + "GPEN-BFR-256.pth"}
    releases = "https://github.com/xinntao/facexlib/releases/download/"
    assert files.DETECTOR.url == releases + "v0.1.0/detection_Resnet50_Final.pth"
    assert files.PARSER.url == releases + "v0.2.2/parsing_parsenet.pth"
    assert files.DETECTOR_NAMES == ("detection_Resnet50_Final.pth", "RetinaFace-R50.pth")
    assert files.PARSER_NAMES == ("parsing_parsenet.pth", "ParseNet-latest.pth")


def test_memory_plan_caps_faces_per_chunk_by_device_and_free_memory():
    from restoration_governor.restoration.gpen.memory import PARSER_BYTES_PER_FACE, faces_per_chunk, working_memory

    assert working_memory(512, 1, with_parser=False) == 512 * 512 * 4096  # 1 GiB per 512 face
    assert working_memory(512, 3) == 3 * (512 * 512 * 4096 + PARSER_BYTES_PER_FACE)
    plenty = 1 << 40
    assert faces_per_chunk(512, plenty, "cpu", faces_hint=10) == 4
    assert faces_per_chunk(512, plenty, "cuda", faces_hint=40) == 16
    assert faces_per_chunk(512, plenty, "cuda", faces_hint=3) == 3
    per_face = working_memory(512, 1)
    assert faces_per_chunk(512, int(5 * per_face / 0.8), "cuda", faces_hint=40) == 5
    assert faces_per_chunk(512, 0, "cuda", faces_hint=40) == 1  # never below one face
