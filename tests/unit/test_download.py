"""The weight downloader against a loopback HTTP server: resume, verification, atomic rename."""

from __future__ import annotations

import hashlib
import os
import socket
import traceback
import urllib.error

import pytest
from harness.http_fixture import FileServer, ServedFile
from restoration_governor.restoration import download as download_module
from restoration_governor.restoration.download import (
    DownloadError,
    MissingWeightsError,
    RemoteFile,
    download,
    download_all,
    lock_path,
)

BODY = os.urandom(3 * (1 << 20) + 12345)


@pytest.fixture
def files():
    with FileServer() as server:
        yield server


def test_downloads_and_reports_progress(files, tmp_path):
    files.files["/m.pth"] = ServedFile(BODY)
    seen = []
    path = download(RemoteFile("m.pth", files.url("/m.pth"), size=len(BODY)), tmp_path,
                    progress=lambda done, total: seen.append((done, total)), chunk_size=1 << 20)
    assert path.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not (tmp_path / "m.pth.part").exists()


def test_resumes_after_a_cut_connection(files, tmp_path):
    served = ServedFile(BODY, cut_after=1 << 20)
    files.files["/m.pth"] = served
    path = download(RemoteFile("m.pth", files.url("/m.pth"), size=len(BODY),
                               sha256=hashlib.sha256(BODY).hexdigest()), tmp_path, retry_delay=0)
    assert path.read_bytes() == BODY
    assert served.requests[0]["range"] is None
    assert served.requests[1]["range"] == f"bytes={1 << 20}-", "the second request must resume, not restart"


def test_resumes_a_part_file_left_by_an_earlier_run(files, tmp_path):
    served = ServedFile(BODY)
    files.files["/m.pth"] = served
    (tmp_path / "m.pth.part").write_bytes(BODY[:5000])
    download(RemoteFile("m.pth", files.url("/m.pth"), size=len(BODY)), tmp_path)
    assert (tmp_path / "m.pth").read_bytes() == BODY
    assert served.requests == [{"range": "bytes=5000-"}]


def test_restarts_when_the_server_ignores_range(files, tmp_path):
    files.files["/m.pth"] = ServedFile(BODY, honour_range=False)
    (tmp_path / "m.pth.part").write_bytes(b"garbage" * 100)
    download(RemoteFile("m.pth", files.url("/m.pth"), size=len(BODY)), tmp_path)
    assert (tmp_path / "m.pth").read_bytes() == BODY


def test_size_mismatch_is_rejected_and_nothing_is_left_under_the_real_name(files, tmp_path):
    files.files["/m.pth"] = ServedFile(BODY)
    with pytest.raises(DownloadError, match="expected|offers"):
        download(RemoteFile("m.pth", files.url("/m.pth"), size=len(BODY) + 1), tmp_path)
    assert not (tmp_path / "m.pth").exists()


def test_checksum_mismatch_is_rejected(files, tmp_path):
    files.files["/m.pth"] = ServedFile(BODY)
    with pytest.raises(DownloadError, match="sha256"):
        download(RemoteFile("m.pth", files.url("/m.pth"), sha256="0" * 64), tmp_path)
    assert not (tmp_path / "m.pth").exists()
    assert not (tmp_path / "m.pth.part").exists()


def test_truncated_transfers_are_retried_then_reported(files, tmp_path):
    # The server promises more bytes than it ever sends: every attempt ends short.
    files.files["/m.pth"] = ServedFile(BODY[:1000], honour_range=False, announced_length=2000)
    with pytest.raises(DownloadError, match=r"^Download m\.pth by hand from http.*failed after 2 attempts"):
        download(RemoteFile("m.pth", files.url("/m.pth")), tmp_path, attempts=2, timeout=2, retry_delay=0)
    assert not (tmp_path / "m.pth").exists()


def test_http_errors_name_the_file(files, tmp_path):
    with pytest.raises(DownloadError, match=r"missing\.pth.*HTTP 404"):
        download(RemoteFile("missing.pth", files.url("/missing.pth")), tmp_path)


def test_existing_file_is_not_downloaded_again(files, tmp_path):
    served = ServedFile(BODY)
    files.files["/m.pth"] = served
    (tmp_path / "m.pth").write_bytes(b"already here")
    assert download(RemoteFile("m.pth", files.url("/m.pth")), tmp_path).read_bytes() == b"already here"
    assert served.requests == []


def test_unit_tests_cannot_reach_the_network(tmp_path):
    with pytest.raises(DownloadError, match="network|attempts"):
        download(RemoteFile("x.pth", "http://203.0.113.1/x.pth"), tmp_path, attempts=1, timeout=1)


class _Offline:
    """``urlopen`` as it fails without network (the host name does not resolve); counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request, timeout=None):
        self.calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


def _no_sleep(seconds):
    raise AssertionError(f"a failure no retry can fix was retried (slept {seconds}s)")


def test_a_host_name_that_does_not_resolve_fails_at_once_with_the_remedy_first(tmp_path, monkeypatch):
    offline = _Offline()
    monkeypatch.setattr(download_module.urllib.request, "urlopen", offline)
    monkeypatch.setattr(download_module.time, "sleep", _no_sleep)
    with pytest.raises(DownloadError) as caught:
        download(RemoteFile("x.pth", "https://weights.example/x.pth"), tmp_path / "models")
    assert len(offline.calls) == 1, "one attempt, not four"
    assert str(caught.value) == (f"Download x.pth by hand from https://weights.example/x.pth and put it in "
                                 f"{tmp_path / 'models'} (no network: the host name does not resolve "
                                 f"(Temporary failure in name resolution))")


def test_a_refused_connection_is_not_retried(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(download_module.time, "sleep", _no_sleep)
    with pytest.raises(DownloadError, match=r"^Download x\.pth by hand .*refused the connection"):
        download(RemoteFile("x.pth", f"http://127.0.0.1:{port}/x.pth"), tmp_path)


def test_offline_one_error_lists_every_missing_file_with_url_and_folder(tmp_path, monkeypatch):
    offline = _Offline()
    monkeypatch.setattr(download_module.urllib.request, "urlopen", offline)
    monkeypatch.setattr(download_module.time, "sleep", _no_sleep)
    gpen, helpers = tmp_path / "models" / "gpen", tmp_path / "models" / "facedetection"
    generator = RemoteFile("GPEN-BFR-512.pth", "https://oss.example/robin/models/GPEN-BFR-512.pth")
    detector = RemoteFile("detection_Resnet50_Final.pth", "https://github.example/v0.1.0/detection_Resnet50_Final.pth")
    parser = RemoteFile("parsing_parsenet.pth", "https://github.example/v0.2.2/parsing_parsenet.pth")
    with pytest.raises(MissingWeightsError) as caught:
        download_all([(generator, gpen), (detector, helpers), (parser, helpers)])
    assert len(offline.calls) == 2, "a host that did not resolve is not asked again for its other files"
    assert str(caught.value).splitlines() == [
        "Download 3 model files by hand and put them in place (the automatic download failed: no network: the "
        "host name does not resolve (Temporary failure in name resolution)):",
        f"- GPEN-BFR-512.pth from https://oss.example/robin/models/GPEN-BFR-512.pth into {gpen}",
        f"- detection_Resnet50_Final.pth from https://github.example/v0.1.0/detection_Resnet50_Final.pth into {helpers}",
        f"- parsing_parsenet.pth from https://github.example/v0.2.2/parsing_parsenet.pth into {helpers}",
    ]
    assert [r.filename for r, _ in caught.value.missing] == [
        "GPEN-BFR-512.pth", "detection_Resnet50_Final.pth", "parsing_parsenet.pth"]
    left = sorted(p.name for folder in (gpen, helpers) if folder.exists() for p in folder.iterdir())
    assert left == [], "no .lock or .part files are left in the model folders"


def test_files_another_node_needs_are_named_in_the_same_message(files, tmp_path):
    files.files["/GPEN-BFR-256.pth"] = ServedFile(b"<html>moved</html>")
    helpers = tmp_path / "facedetection"
    helpers.mkdir()
    (helpers / "parsing_parsenet.pth").write_bytes(b"already here")
    wanted = [(RemoteFile("GPEN-BFR-256.pth", files.url("/GPEN-BFR-256.pth"), min_size=1000), tmp_path / "gpen")]
    also = [(RemoteFile("detection_Resnet50_Final.pth", files.url("/det.pth")), helpers),
            (RemoteFile("parsing_parsenet.pth", files.url("/par.pth")), helpers)]
    with pytest.raises(MissingWeightsError) as caught:
        download_all(wanted, also_missing=also, also_why="also needed by GPEN Restore Faces")
    lines = str(caught.value).splitlines()
    assert lines[0] == "Download 2 model files by hand and put them in place (the automatic download failed):"
    assert lines[1].startswith("- GPEN-BFR-256.pth from http") and "has only 18 bytes" in lines[1]
    assert lines[2] == (f"- detection_Resnet50_Final.pth from {files.url('/det.pth')} into {helpers} "
                        "(also needed by GPEN Restore Faces)")
    assert len(lines) == 3, "a file already on disk is not listed"


def test_download_all_fetches_each_missing_file_and_keeps_the_ones_there(files, tmp_path):
    files.files["/a.pth"] = ServedFile(b"a" * 10)
    files.files["/b.pth"] = ServedFile(b"b" * 10)
    (tmp_path / "b.pth").write_bytes(b"mine")
    paths = download_all([(RemoteFile("a.pth", files.url("/a.pth")), tmp_path),
                          (RemoteFile("b.pth", files.url("/b.pth")), tmp_path)])
    assert [p.read_bytes() for p in paths] == [b"a" * 10, b"mine"]
    assert files.files["/b.pth"].requests == []


def test_the_download_lock_lives_outside_the_model_folder(files, tmp_path):
    files.files["/m.pth"] = ServedFile(BODY[:1000])
    download(RemoteFile("m.pth", files.url("/m.pth")), tmp_path)
    with pytest.raises(DownloadError):
        download(RemoteFile("gone.pth", files.url("/gone.pth")), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]
    assert tmp_path not in lock_path(tmp_path / "m.pth").parents


def test_pack_exceptions_show_a_short_type_name_in_comfyui_and_tracebacks():
    from restoration_governor.restoration.ddcolor.loading import DDColorLoadError
    from restoration_governor.restoration.gpen.loading import GPENCheckpointError

    def comfyui_type_name(cls):  # ComfyUI 0.3.75 execution.full_type_name, the exception_type users see
        return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"

    for cls in (DownloadError, MissingWeightsError, DDColorLoadError, GPENCheckpointError):
        assert comfyui_type_name(cls) == cls.__name__
    error = DownloadError("Download x.pth by hand")
    assert traceback.format_exception_only(error) == ["DownloadError: Download x.pth by hand\n"]
    assert issubclass(MissingWeightsError, DownloadError) and issubclass(DDColorLoadError, ValueError)

