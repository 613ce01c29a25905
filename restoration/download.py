"""Resumable, verified downloads of official model weights.

Used on first use of an official checkpoint that is missing from the model folder. The file is
written to ``<name>.part`` (resumed with an HTTP Range request after a cut), checked against the
size the server announced and the size/sha256 we know, then renamed atomically, so a model folder
never holds a truncated file under the real name.

A cut or slow transfer is retried (and resumed); a failure that a retry cannot fix (the host name
does not resolve, the connection is refused, the network is unreachable, an HTTP error) is not.
:func:`download_all` fetches every missing file a node needs and, when some cannot be fetched,
raises one :class:`MissingWeightsError` that lists each of them with its URL and folder. The lock
that keeps two processes from writing the same file lives in the system's temp folder, so a failed
download leaves nothing in the model folder but a resumable ``.part`` (and only once bytes arrived).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from .errors import short_type_name

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ECONNREFUSED}
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


@short_type_name
class DownloadError(RuntimeError):
    """The file could not be fetched or failed verification; the message starts with what to do."""


@short_type_name
class MissingWeightsError(DownloadError):
    """Model files a node needs are missing and could not be downloaded.

    ``missing`` lists ``(remote, folder)`` for every one of them; the message names each file, its URL
    and the folder to put it in, remedy first.
    """

    def __init__(self, missing: Sequence[tuple[RemoteFile, Path]], reasons: dict[str, str]) -> None:
        self.missing = list(missing)
        several = len(self.missing) > 1
        distinct = {reasons.get(remote.filename) for remote, _ in self.missing}
        shared = distinct.pop() if len(distinct) == 1 else None
        head = (f"Download {len(self.missing)} model files by hand and put them in place" if several
                else "Download this model file by hand and put it in place")
        lines = [f"{head} (the automatic download failed{': ' + shared if shared else ''}):"]
        for remote, folder in self.missing:
            why = None if shared else reasons.get(remote.filename)
            lines.append(f"- {remote.filename} from {remote.url} into {folder}" + (f" ({why})" if why else ""))
        super().__init__("\n".join(lines))


class _Fatal(Exception):
    """A failure no retry can fix; the message says why, in a few words. ``host_down``: nor for other files."""

    def __init__(self, why: str, *, host_down: bool = False) -> None:
        super().__init__(why)
        self.host_down = host_down


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
    """Fetch ``remote`` into ``dest_dir`` unless a file of that name is there; return its path.

    Raises :class:`DownloadError` (remedy first: download it by hand from the URL into the folder)
    after ``attempts`` cut or timed-out transfers, or at once when the host cannot be reached, the
    server answers an HTTP error, or the file fails verification.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / remote.filename
    if final.resolve().parent != dest_dir.resolve():
        raise DownloadError(f"Refusing to write {remote.filename!r} outside {dest_dir}")
    try:
        return _download(remote, dest_dir, progress, attempts, timeout, chunk_size, retry_delay)
    except _Fatal as e:
        raise DownloadError(_by_hand(remote, dest_dir, str(e))) from e


def download_all(
    wanted: Sequence[tuple[RemoteFile, str | os.PathLike[str]]],
    *,
    also_missing: Sequence[tuple[RemoteFile, str | os.PathLike[str]]] = (),
    also_why: str = "needed later in this graph",
    progress_for: Callable[[RemoteFile], ProgressFn | None] | None = None,
    **options,
) -> list[Path]:
    """Fetch every file of ``wanted`` that is missing; return their paths in the same order.

    A host that turned out unreachable is not tried again for the other files. When any file cannot
    be fetched, raises one :class:`MissingWeightsError` listing all of them, plus the files of
    ``also_missing`` (other files the same graph will need, not fetched now; ``also_why`` says so)
    that are not on disk.
    ``options`` are passed to :func:`download`.
    """
    paths: list[Path] = []
    failed: list[tuple[RemoteFile, Path]] = []
    reasons: dict[str, str] = {}
    dead_hosts: dict[str, str] = {}
    for remote, folder in wanted:
        folder = Path(folder)
        host = urllib.parse.urlsplit(remote.url).netloc
        if host in dead_hosts:
            failed.append((remote, folder))
            reasons[remote.filename] = dead_hosts[host]
            continue
        progress = progress_for(remote) if progress_for else None
        try:
            paths.append(_download(remote, folder, progress, **_download_options(options)))
        except _Fatal as e:
            if e.host_down:
                dead_hosts[host] = str(e)
            failed.append((remote, folder))
            reasons[remote.filename] = str(e)
    if failed:
        for remote, folder in also_missing:
            if not (Path(folder) / remote.filename).exists():
                failed.append((remote, Path(folder)))
                reasons[remote.filename] = also_why
        raise MissingWeightsError(failed, reasons)
    return paths


def _download_options(options: dict) -> dict:
    defaults = {"attempts": 4, "timeout": 60.0, "chunk_size": 1 << 20, "retry_delay": 2.0}
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown download option(s): {', '.join(sorted(unknown))}")
    return {**defaults, **options}


def _by_hand(remote: RemoteFile, dest_dir: Path, why: str) -> str:
    return f"Download {remote.filename} by hand from {remote.url} and put it in {dest_dir} ({why})"


def _download(remote: RemoteFile, dest_dir: Path, progress: ProgressFn | None, attempts: int, timeout: float,
              chunk_size: int, retry_delay: float) -> Path:
    final = dest_dir / remote.filename
    if final.exists():
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(final):
        if final.exists():  # another process finished it while we waited
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
            except _Fatal:
                raise
            except (urllib.error.URLError, OSError, TimeoutError, ConnectionError) as e:
                why = _unreachable_reason(e)
                if why is not None:
                    raise _Fatal(why, host_down=True) from e
                last_error = e
                log.warning("download of %s interrupted (attempt %d/%d): %s", remote.filename, attempt, attempts, e)
                if attempt < attempts:
                    time.sleep(min(retry_delay * attempt, 10.0))
        raise _Fatal(f"failed after {attempts} attempts: {last_error}")


def _unreachable_reason(error: BaseException) -> str | None:
    """Why ``error`` means the host cannot be reached at all (no retry helps), or None for a transient one."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return f"no network: the host name does not resolve ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "the server refused the connection"
    if isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNOS:
        return f"no network: {reason.strerror or reason}"
    return None


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
        raise _Fatal(f"the server answered HTTP {e.code} {e.reason}") from e
    with response:
        total = _expected_total(response, have)
        if response.status == 200 and have:
            have = 0  # the server ignored the Range header: start from scratch
        if remote.size is not None and total is not None and total != remote.size:
            raise _Fatal(f"the server offers {total} bytes but the official file has {remote.size}")
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
        raise _Fatal(f"the downloaded file {problem}; it was removed")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lock_path(final: Path) -> Path:
    """Where the cross-process lock for downloading ``final`` lives: the temp folder, not the model folder."""
    key = hashlib.sha256(str(final.resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "restoration-governor-downloads" / f"{key}.lock"


@contextlib.contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """One download per file: a thread lock within the process, an OS file lock across processes."""
    key = str(final.resolve())
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    path = lock_path(final)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o1777)  # shared like /tmp itself: every user's ComfyUI may lock here
    with lock, FileLock(str(path), mode=0o666):
        yield
