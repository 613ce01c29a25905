"""The four officially released DDColor checkpoints and where to download them.

Facts from models.md 1.2: all four are ``{'params': state_dict}`` files on the Hugging Face repo
``piddnad/DDColor-models``; three use the ConvNeXt-L encoder (~912 MB), ``ddcolor_paper_tiny``
the ConvNeXt-T encoder (~220 MB). Exact byte counts are known (from independent third-party
download scripts that agree) for modelscope (also its sha256) and artistic; for the other two the
download is checked against the size the server announces and a floor that catches a truncated
file or an HTML error page.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..download import RemoteFile

# Module attribute, not a constant: tests point it at a loopback server.
DOWNLOAD_BASE_URL = "https://huggingface.co/piddnad/DDColor-models/resolve/main"


@dataclass(frozen=True)
class OfficialCheckpoint:
    filename: str
    encoder: str  # "convnext-l" | "convnext-t"
    size: int | None  # exact bytes where known
    min_size: int  # floor for the others
    purpose: str
    sha256: str | None = None


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    c.filename: c
    for c in (
        OfficialCheckpoint("ddcolor_modelscope.pth", "convnext-l", 911_950_059, 900_000_000,
                           "the official default; BigColor-style cleaned training data, vivid colours",
                           "17c460d7e55b32a598370621d77173be59e03c24b0823f06821db23a50c263ce"),
        OfficialCheckpoint("ddcolor_artistic.pth", "convnext-l", 911_950_059, 900_000_000,
                           "trained without the colourfulness loss: calmer colours, fewer red blotches"),
        OfficialCheckpoint("ddcolor_paper.pth", "convnext-l", None, 900_000_000,
                           "the paper's model, for reproducing its figures"),
        OfficialCheckpoint("ddcolor_paper_tiny.pth", "convnext-t", None, 215_000_000,
                           "DDColor-T: ConvNeXt-T encoder, ~4x smaller and faster"),
    )
}


def is_official(filename: str) -> bool:
    return filename in OFFICIAL_CHECKPOINTS


def official_remote(filename: str) -> RemoteFile:
    """Where and how to fetch an official checkpoint (URL built from ``DOWNLOAD_BASE_URL`` now)."""
    checkpoint = OFFICIAL_CHECKPOINTS[filename]
    return RemoteFile(
        filename=checkpoint.filename,
        url=f"{DOWNLOAD_BASE_URL.rstrip('/')}/{checkpoint.filename}",
        size=checkpoint.size,
        sha256=checkpoint.sha256,
        min_size=checkpoint.min_size,
    )
