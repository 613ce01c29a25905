"""Download an official weight file from a node, with progress in the UI and in the console.

Both model families call this on first use of a missing official file; the transfer itself
(resume, verification, atomic rename) is :func:`restoration.download.download`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..restoration.download import RemoteFile, download, download_all
from . import comfy_bridge

log = logging.getLogger("restoration_governor.download")


class DownloadProgress:
    """Shows a download in the node's progress bar (at most 4 updates/s) and, every 5 %, in the console."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar = None
        self.last_ui = 0.0
        self.last_logged = -1

    def __call__(self, done: int, total: int | None) -> None:
        if not total:
            return
        now = time.monotonic()
        if self.bar is None:
            self.bar = comfy_bridge.comfy_utils().ProgressBar(total)
        if now - self.last_ui >= 0.25 or done >= total:  # each update is a websocket message
            self.bar.update_absolute(done, total)
            self.last_ui = now
        step = int(20 * done / total)
        if step != self.last_logged:
            self.last_logged = step
            log.info("downloading %s: %d%% (%.0f of %.0f MB)", self.name, 100 * done // total, done / 1e6,
                     total / 1e6)


def download_weights(remote: RemoteFile, dest_dir: str | Path) -> Path:
    log.info("%s is missing: downloading it from %s into %s", remote.filename, remote.url, dest_dir)
    return download(remote, dest_dir, progress=DownloadProgress(remote.filename))


def download_missing(wanted: Sequence[tuple[RemoteFile, str | Path]], *,
                     also_missing: Sequence[tuple[RemoteFile, str | Path]] = (), also_why: str = "") -> list[Path]:
    """Every missing file of ``wanted``, downloaded; one ``MissingWeightsError`` lists all that could not be
    (with ``also_missing``: files another node of the graph needs, named in the same message)."""
    for remote, folder in wanted:
        if not (Path(folder) / remote.filename).exists():
            log.info("%s is missing: downloading it from %s into %s", remote.filename, remote.url, folder)
    extra = {"also_why": also_why} if also_why else {}
    return download_all(wanted, also_missing=also_missing,
                        progress_for=lambda remote: DownloadProgress(remote.filename), **extra)
