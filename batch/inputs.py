"""Finding the photos of a batch and checking each one before anything is sent.

A photo is read once: its bytes give the SHA-256 that keys the job, Pillow checks that it is a
whole image of an accepted format and reads its size and bit depth. A file that fails is a
``BadInput`` with a reason a person can act on; it never stops the batch.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
UPLOAD_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


@dataclass(frozen=True)
class Source:
    """A file to restore: ``path`` on disk, ``relative`` its place under the input root (mirrored in --out)."""

    path: Path
    relative: Path


@dataclass(frozen=True)
class Photo:
    """A readable photo: content hash (hex SHA-256), format, size in pixels, and whether it has >8 bits."""

    source: Source
    data: bytes
    sha256: str
    format: str
    size: tuple[int, int]
    mode: str
    sixteen_bit: bool

    @property
    def upload_name(self) -> str:
        """Content-addressed name for ``/upload/image``: the same bytes always land in the same file."""
        return f"{self.sha256[:32]}{UPLOAD_SUFFIX.get(self.format, '.png')}"


@dataclass(frozen=True)
class BadInput:
    source: Source
    reason: str
    sha256: str = ""


def collect(inputs: Iterable[str | Path], exclude: Path | None = None) -> tuple[list[Source], list[str]]:
    """Sources from files and folders (recursive, sorted); the second list names inputs that do not exist.

    A file named explicitly is taken whatever its extension (it is checked later); inside folders
    only image extensions count, and hidden files and folders are skipped, and so is everything under
    ``exclude`` (the output folder: results written beside the scans are never taken as new scans).
    """
    excluded = exclude.resolve() if exclude is not None else None
    sources: list[Source] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for raw in inputs:
        root = Path(raw)
        if root.is_dir():
            found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
            pairs: Iterator[tuple[Path, Path]] = ((p, p.relative_to(root)) for p in found)
        elif root.is_file():
            pairs = iter([(root, Path(root.name))])
        else:
            missing.append(str(raw))
            continue
        for path, relative in pairs:
            resolved = path.resolve()
            if excluded is not None and root.is_dir() and resolved.is_relative_to(excluded):
                continue
            if resolved not in seen:
                seen.add(resolved)
                sources.append(Source(path, relative))
    return sources, missing


def inspect(source: Source, max_pixels: int | None = None) -> Photo | BadInput:
    """Read and check one file. ``max_pixels``: the server's ``upload_max_pixels`` cap, if known."""
    try:
        data = source.path.read_bytes()
    except OSError as e:
        return BadInput(source, f"cannot read the file: {e.strerror or e}")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, size, mode = img.format or "", img.size, img.mode
                if max_pixels and size[0] * size[1] > max_pixels:
                    return BadInput(source, f"too many pixels: {size[0]}x{size[1]} = {size[0] * size[1]}, "
                                            f"the server accepts at most {max_pixels}", digest)
                img.load()  # decodes everything: a truncated or corrupt file fails here
    except Image.DecompressionBombError:
        return BadInput(source, "too many pixels (Pillow refuses it as a decompression bomb)", digest)
    except Image.UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        return BadInput(source, f"not a readable image: {source.path.name} is not an image format Pillow "
                                "knows; use JPEG, PNG, TIFF, BMP or WebP", digest)
    except Exception as e:
        return BadInput(source, f"not a readable image: {source.path.name}: {e}", digest)
    if fmt not in UPLOAD_SUFFIX:
        return BadInput(source, f"unsupported format {fmt or 'unknown'}; use JPEG, PNG, TIFF, BMP or WebP", digest)
    return Photo(source, data, digest, fmt, size, mode, mode in HIGH_BIT_MODES or _png_is_16_bit(data, fmt))


def _png_is_16_bit(data: bytes, fmt: str) -> bool:
    # RGB(A) 16-bit PNGs open as 8-bit "RGB" in Pillow; the IHDR chunk has the real depth.
    return fmt == "PNG" and len(data) > 24 and data[24] == 16
