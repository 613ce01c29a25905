"""Resumable, verified downloads of official model weights.

Used on first use of an official checkpoint that is missing from the model folder. The file is
written to ``<name>.part`` (resumed with an HTTP Range request after a cut), checked against the
size the server announced and the size/sha256 we know, then renamed atomically, so a model folder
never holds a truncated file under the real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@dataclass(frozen=True)
class RemoteFile:
    """An official file: where it comes from and what we know about it."""

    filename: str
    url: str
    size: int | None = None  # exact byte count, when published
    sha256: str | None = None
    min_size: int = 1  # a floor that catches an HTML error page saved as a model

    def describe(self) -> str:
        return f"{self.filename} from {self.url}"


class DownloadError(RuntimeError):
    """The file could not be fetched or failed verification; the message says which and why."""


def download(
    remote: RemoteFile,
    dest_dir: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    attempts: int = 4,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    retry_delay: float = 2.0,
) -> Path:
    """Fetch ``remote`` into ``dest_dir`` unless a verified copy is there; return its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    if final.resolve().parent != dest_dir.resolve():
        raise DownloadError(f"refusing to write {remote.filename!r} outside {dest_dir}")
    with _exclusive(final):
        if final.exists():
            return final
        part = final.with_name(final.name + ".part")
        last_error: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                _fetch_into(remote, part, progress, timeout, chunk_size)
                _verify(remote, part)
                os.replace(part, final)
                log.info("downloaded %s (%d bytes)", final, final.stat().st_size)
                return final
            except DownloadError:
                raise
            except (urllib.error.URLError, OSError, TimeoutError, ConnectionError) as e:
                last_error = e
                log.warning("download of %s interrupted (attempt %d/%d): %s", remote.filename, attempt, attempts, e)
                if attempt < attempts:
                    time.sleep(min(retry_delay * attempt, 10.0))
        raise DownloadError(
            f"could not download {remote.describe()} after {attempts} attempts ({last_error}). "
            f"Download it by hand and put it in {dest_dir}."
        )


def _fetch_into(remote: RemoteFile, part: Path, progress: ProgressFn | None, timeout: float, chunk_size: int) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "restoration-governor"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: the part may already be whole
            if remote.size is not None and have == remote.size:
                return
            part.unlink()
            raise ConnectionError("server refused to resume; starting over") from e
        raise DownloadError(f"{remote.describe()}: HTTP {e.code} {e.reason}") from e
    with response:
        total = _expected_total(response, have)
        if response.status == 200 and have:
            have = 0  # the server ignored the Range header: start from scratch
        if remote.size is not None and total is not None and total != remote.size:
            raise DownloadError(
                f"{remote.describe()}: the server offers {total} bytes but the official file has {remote.size}"
            )
        total = total if total is not None else remote.size
        mode = "ab" if have else "wb"
        with open(part, mode) as out:
            if progress:
                progress(have, total)
            while True:
                block = response.read(chunk_size)
                if not block:
                    break
                out.write(block)
                have += len(block)
                if progress:
                    progress(have, total)
            out.flush()
            os.fsync(out.fileno())
    if total is not None and have != total:
        raise ConnectionError(f"connection closed after {have} of {total} bytes")


def _expected_total(response, have: int) -> int | None:
    """Full file size as the server states it (Content-Range on a 206, else Content-Length)."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            raise ConnectionError("server answered the resume with a range we did not ask for")
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _verify(remote: RemoteFile, part: Path) -> None:
    size = part.stat().st_size
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"has {size} bytes, expected {remote.size}"
    elif size < remote.min_size:
        problem = f"has only {size} bytes"
    elif remote.sha256 is not None:
        digest = _sha256(part)
        if digest != remote.sha256.lower():
            problem = f"sha256 {digest} does not match {remote.sha256}"
    if problem:
        part.unlink(missing_ok=True)
        raise DownloadError(f"downloaded {remote.filename} {problem}; the partial file was removed")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """One download per file: a thread lock within the process, an OS file lock across processes."""
    key = str(final.resolve())
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    with lock, FileLock(str(final.with_name(final.name + ".lock"))):
        yield
