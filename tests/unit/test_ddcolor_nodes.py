"""The DDColor nodes with ComfyUI's services faked in-process: download on first use, progress,
interrupts, chunking and the notes the user sees. Downloads go to a loopback server only."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from harness.ddcolor_checkpoints import checkpoint_file
from harness.http_fixture import FileServer, ServedFile
from restoration_governor.nodes import comfy_bridge
from restoration_governor.nodes import ddcolor as node
from restoration_governor.restoration.ddcolor import files as checkpoints
from restoration_governor.restoration.download import DownloadError


class FakeFolderPaths:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get_folder_paths(self, name):
        assert name == "ddcolor"
        return [str(self.folder)]

    def get_filename_list(self, name):
        return sorted(p.name for p in self.folder.iterdir() if p.suffix in (".pth", ".safetensors"))

    def get_full_path(self, name, filename):
        path = self.folder / filename
        return str(path) if path.is_file() else None


class FakeProgressBar:
    instances: list[FakeProgressBar] = []

    def __init__(self, total):
        self.total = total
        self.updates: list[tuple[int, int]] = []
        FakeProgressBar.instances.append(self)

    def update_absolute(self, value, total=None):
        self.updates.append((value, total))


class FakeComfyUtils:
    ProgressBar = FakeProgressBar


class InterruptProcessingException(BaseException):  # a BaseException in current cores (was Exception)
    pass


class FakeModelManagement:
    def __init__(self) -> None:
        self.emptied = 0
        self.interrupt_at_check: int | None = None  # raise at this interrupt check (1-based)
        self.checks = 0

    def throw_exception_if_processing_interrupted(self):
        self.checks += 1
        if self.checks == self.interrupt_at_check:
            raise InterruptProcessingException

    def get_free_memory(self, device=None):
        return 64 << 30

    def intermediate_device(self):
        return torch.device("cpu")

    def soft_empty_cache(self):
        self.emptied += 1


class FakeServer:
    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def send_progress_text(self, text, node_id):
        self.texts.append((text, node_id))


class FakeManaged:
    def __init__(self, module):
        self.module = module
        self.load_device = torch.device("cpu")
        self.loads: list[int] = []

    def load(self, working_memory=0):
        self.loads.append(working_memory)
        return self.load_device


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """ComfyUI's services as the nodes see them through comfy_bridge, faked."""
    models = tmp_path / "models" / "ddcolor"
    models.mkdir(parents=True)
    mm, server = FakeModelManagement(), FakeServer()
    FakeProgressBar.instances.clear()
    monkeypatch.setattr(comfy_bridge, "folder_paths", lambda: FakeFolderPaths(models))
    monkeypatch.setattr(comfy_bridge, "comfy_utils", lambda: FakeComfyUtils)
    monkeypatch.setattr(comfy_bridge, "model_management", lambda: mm)
    monkeypatch.setattr(comfy_bridge, "prompt_server", lambda: server)
    monkeypatch.setattr(node, "ManagedModel", FakeManaged)
    return {"models": models, "mm": mm, "server": server}


@pytest.fixture
def official_host(monkeypatch):
    """The official download URL pointed at a loopback file server."""
    with FileServer() as files:
        monkeypatch.setattr(checkpoints, "DOWNLOAD_BASE_URL", files.url("/piddnad/DDColor-models/resolve/main"))
        yield files


def _serve_official(files: FileServer, name: str, body: bytes, *, size: int | None = None, monkeypatch,
                    **served) -> ServedFile:
    entry = dataclasses.replace(checkpoints.OFFICIAL_CHECKPOINTS[name], size=size if size is not None else len(body),
                                min_size=1, sha256=None)
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, name, entry)
    files.files[f"/piddnad/DDColor-models/resolve/main/{name}"] = ServedFile(body, **served)
    return files.files[f"/piddnad/DDColor-models/resolve/main/{name}"]


def test_choices_list_local_files_and_every_official_checkpoint(comfy):
    (comfy["models"] / "my_finetune.pth").write_bytes(b"x")
    (comfy["models"] / "ddcolor_artistic.pth").write_bytes(b"x")
    choices = node.checkpoint_choices()
    assert choices[:2] == ["ddcolor_artistic.pth", "my_finetune.pth"]
    assert sorted(choices) == sorted(["my_finetune.pth", *checkpoints.OFFICIAL_CHECKPOINTS])
    spec = node.DDColorModelLoader.INPUT_TYPES()["required"]["model_name"]
    assert spec[0] == choices and spec[1]["default"] == "ddcolor_modelscope.pth"


def test_missing_official_checkpoint_is_downloaded_with_progress_and_resumed_after_a_cut(comfy, official_host,
                                                                                       monkeypatch, caplog):
    body = bytes(range(256)) * 4096  # 1 MiB stands in for the 220 MB file
    served = _serve_official(official_host, "ddcolor_paper_tiny.pth", body, cut_after=300_000,
                             monkeypatch=monkeypatch)
    with caplog.at_level(logging.INFO, logger="restoration_governor.download"):
        path = node.resolve_checkpoint("ddcolor_paper_tiny.pth")
    assert path == comfy["models"] / "ddcolor_paper_tiny.pth" and path.read_bytes() == body
    assert [r["range"] for r in served.requests] == [None, "bytes=300000-"]
    bar = FakeProgressBar.instances[-1]
    assert bar.total == len(body) and bar.updates[-1] == (len(body), len(body))
    assert "downloading ddcolor_paper_tiny.pth: 100%" in caplog.text  # console progress
    assert not list(comfy["models"].glob("*.part"))


def test_loader_node_loads_a_checkpoint_from_the_model_folder(comfy):
    (comfy["models"] / "ddcolor_paper_tiny.pth").hardlink_to(checkpoint_file("convnext-t"))
    (model,) = node.DDColorModelLoader().load("ddcolor_paper_tiny.pth")
    assert model.loaded.encoder == "convnext-t"
    assert isinstance(model.managed, FakeManaged) and model.managed.module is model.loaded.module
    assert "convnext-t" in repr(model)


def test_a_download_of_the_wrong_size_is_rejected(comfy, official_host, monkeypatch):
    _serve_official(official_host, "ddcolor_paper.pth", b"<html>not a model</html>", size=911_950_059,
                    monkeypatch=monkeypatch)
    with pytest.raises(DownloadError, match="911950059"):
        node.resolve_checkpoint("ddcolor_paper.pth")
    assert not (comfy["models"] / "ddcolor_paper.pth").exists()


def test_a_local_file_is_used_without_any_download(comfy, official_host, monkeypatch):
    served = _serve_official(official_host, "ddcolor_artistic.pth", b"remote", monkeypatch=monkeypatch)
    (comfy["models"] / "ddcolor_artistic.pth").write_bytes(b"local")
    assert node.resolve_checkpoint("ddcolor_artistic.pth") == comfy["models"] / "ddcolor_artistic.pth"
    assert served.requests == []


def test_an_unknown_missing_file_names_the_folder(comfy):
    with pytest.raises(FileNotFoundError, match=r"my_model\.pth.*models/ddcolor"):
        node.resolve_checkpoint("my_model.pth")


def test_official_urls_are_the_hugging_face_release():
    remote = checkpoints.official_remote("ddcolor_modelscope.pth")
    assert remote.url == "https://huggingface.co/piddnad/DDColor-models/resolve/main/ddcolor_modelscope.pth"
    assert remote.size == 911_950_059
    assert {checkpoints.OFFICIAL_CHECKPOINTS[n].encoder for n in checkpoints.OFFICIAL_CHECKPOINTS} == {
        "convnext-l", "convnext-t"}


class TinyColorizer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(30.0))
        self.batches: list[int] = []

    def forward(self, gray):
        self.batches.append(gray.shape[0])
        return self.gain * torch.cat([gray[:, :1] - 0.5, 0.4 - gray[:, :1]], dim=1)


def _model() -> node.DDColorModel:
    module = TinyColorizer()
    loaded = type("Loaded", (), {"description": "fake", "module": module})()
    return node.DDColorModel(loaded, FakeManaged(module))


def _run(model, images, **overrides):
    inputs = dict(preset="custom", input_size=64, ab_upsample="guided", keep_aspect=False, clamp_ab=True,
                  precision="auto", unique_id="7")
    inputs.update(overrides)
    return node.DDColorColorize().colorize(images, model, **inputs)["result"][0]


def test_colorize_node_chunks_reports_progress_and_loads_through_model_management(comfy, monkeypatch):
    monkeypatch.setattr(node, "MAX_CHUNK_CPU", 3)  # the fake model lives on the CPU
    model = _model()
    out = _run(model, torch.rand(7, 40, 40, 3))
    assert out.shape == (7, 40, 40, 3)
    assert model.managed.module.batches == [3, 3, 1]
    assert model.managed.loads and model.managed.loads[0] > 0  # working memory was requested
    assert FakeProgressBar.instances[-1].updates == [(3, 7), (6, 7), (7, 7)]


def test_colorize_node_stops_between_chunks_when_interrupted(comfy, monkeypatch):
    monkeypatch.setattr(node, "MAX_CHUNK_CPU", 2)
    comfy["mm"].interrupt_at_check = 2  # the user presses cancel while the first chunk runs
    model = _model()
    with pytest.raises(InterruptProcessingException):
        _run(model, torch.rand(6, 32, 32, 3))
    assert model.managed.module.batches == [2]


def test_odd_input_size_is_rounded_and_the_user_is_told(comfy):
    model = _model()
    _run(model, torch.rand(1, 50, 50, 3), input_size=100)
    assert ("input_size 100 is not a multiple of 32 in 32..4096: using 96", "7") in comfy["server"].texts
    _run(model, torch.rand(1, 50, 50, 3), preset="building", ab_upsample="nearest")
    assert any("preset building uses ab_upsample=guided" in text for text, _ in comfy["server"].texts)


def test_on_the_cpu_photos_go_one_at_a_time(comfy):
    model = _model()
    _run(model, torch.rand(3, 40, 40, 3))
    assert model.managed.module.batches == [1, 1, 1]


def test_chunk_shrinks_to_what_fits_in_free_memory(comfy, monkeypatch):
    monkeypatch.setattr(node, "MAX_CHUNK_CPU", 8)
    monkeypatch.setattr(comfy["mm"], "get_free_memory", lambda device=None: 1)  # nothing free: one at a time
    model = _model()
    _run(model, torch.rand(3, 40, 40, 3))
    assert model.managed.module.batches == [1, 1, 1]


def test_a_clipped_input_gets_a_visible_note_whatever_loaded_it(comfy):
    model = _model()
    washed_out = torch.ones(1, 40, 40, 3)
    washed_out[:, :4, :4] = 0.5  # 1% of the pixels are not white
    result = node.DDColorColorize().colorize(washed_out, model, preset="custom", input_size=64,
                                             ab_upsample="guided", keep_aspect=False, clamp_ab=True,
                                             precision="auto", unique_id="9")
    [(text, node_id)] = [t for t in comfy["server"].texts if t[1] == "9"]
    assert "99.0% of its pixels are pure white" in text and "Load Photo (any bit depth)" in text
    assert result["ui"]["text"] == [text]


def test_a_normal_photo_gets_no_clipping_note(comfy):
    photo = torch.linspace(0, 1, 40)[None, None, :, None].expand(1, 40, 40, 3).contiguous()
    result = node.DDColorColorize().colorize(photo, _model(), preset="custom", input_size=64,
                                             ab_upsample="guided", keep_aspect=False, clamp_ab=True,
                                             precision="auto", unique_id="9")
    assert "ui" not in result and not [t for t in comfy["server"].texts if t[1] == "9"]
