"""Offline, a GPEN graph names every missing weight file in its first failed run (issue: one file per run)."""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path

import pytest
from restoration_governor.nodes import gpen as gpen_nodes
from restoration_governor.restoration import download as download_module
from restoration_governor.restoration.download import MissingWeightsError
from restoration_governor.restoration.gpen import files


class FolderPaths:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get_folder_paths(self, name: str) -> list[str]:
        return [str(self.root / name)]

    def get_full_path(self, name: str, filename: str) -> str | None:
        path = self.root / name / filename
        return str(path) if path.is_file() else None


@pytest.fixture
def offline(tmp_path, monkeypatch):
    calls: list[str] = []

    def urlopen(request, timeout=None):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(download_module.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(download_module.time, "sleep", lambda s: pytest.fail("retried a DNS failure"))
    monkeypatch.setattr(gpen_nodes.comfy_bridge, "folder_paths", lambda: FolderPaths(tmp_path / "models"))
    return calls


def test_the_loader_names_the_generator_and_the_face_helpers_in_one_message(tmp_path, offline):
    with pytest.raises(MissingWeightsError) as caught:
        gpen_nodes.GPENModelLoader().load("GPEN-BFR-512.pth")
    models = tmp_path / "models"
    message = str(caught.value)
    assert message.startswith("Download 3 model files by hand and put them in place")
    assert f"- GPEN-BFR-512.pth from {files.OFFICIAL_GENERATORS['GPEN-BFR-512.pth'].url} into {models / 'gpen'}" \
        in message
    assert f"- detection_Resnet50_Final.pth from {files.DETECTOR.url} into {models / 'facedetection'}" in message
    assert f"- parsing_parsenet.pth from {files.PARSER.url} into {models / 'facedetection'}" in message
    assert offline == [files.OFFICIAL_GENERATORS["GPEN-BFR-512.pth"].url], "one try, only for the loader's file"
    assert not any(p.is_file() for p in models.rglob("*")), "no .lock / .part left behind"


def test_restore_faces_asks_for_both_helpers_at_once(tmp_path, offline):
    helpers = tmp_path / "models" / "facedetection"
    helpers.mkdir(parents=True)
    (helpers / "RetinaFace-R50.pth").write_bytes(b"GPEN's name for the detector")
    with pytest.raises(MissingWeightsError) as caught:
        gpen_nodes.face_helpers()
    assert [r.filename for r, _ in caught.value.missing] == ["parsing_parsenet.pth"]
    assert str(caught.value).startswith("Download this model file by hand and put it in place (the automatic "
                                        "download failed: no network: the host name does not resolve")
