"""The weight downloader against a loopback HTTP server: resume, verification, atomic rename."""

from __future__ import annotations

import hashlib
import os

import pytest
from harness.http_fixture import FileServer, ServedFile
from restoration_governor.restoration.download import DownloadError, RemoteFile, download

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
    with pytest.raises(DownloadError, match="after 2 attempts"):
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
