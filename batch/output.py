"""Writing a result next to its mirrored input path: ``<out>/<sub/dirs>/<name>_restored.png``.

The server returns 8-bit PNGs. What is carried over from the scan:

* EXIF (camera, date, scanner notes), with the orientation reset to 1: the server already turned
  the pixels upright;
* the ICC profile when scan and result are both RGB (a grayscale profile cannot describe a
  colourised result, so it is dropped);
* with ``sixteen_bit`` and a 16-bit scan of the same size: a 16-bit PNG whose brightness comes
  from the scan's own 16-bit tones and whose colour comes from the result (the models work in
  8 bits; this keeps the scan's tonal depth instead of padding 8-bit values).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .inputs import Photo

ORIENTATION = 0x0112


def result_stems(relatives: list[Path]) -> dict[Path, Path]:
    """Where each input's results go, relative to --out, without the ``_restored.png`` ending.

    ``dir/name.ext`` -> ``dir/name``; when two inputs of one folder share a name (``print.bmp``,
    ``print.webp``), both keep their extension in it (``print_bmp``, ``print_webp``).
    """
    counts: dict[tuple[Path, str], int] = {}
    for rel in relatives:
        counts[(rel.parent, rel.stem.lower())] = counts.get((rel.parent, rel.stem.lower()), 0) + 1
    return {rel: rel.parent / (rel.stem if counts[(rel.parent, rel.stem.lower())] == 1
                               else f"{rel.stem}_{rel.suffix.lstrip('.').lower()}") for rel in relatives}


def result_path(out_dir: Path, stem: Path, index: int) -> Path:
    """``<out>/<stem>_restored.png`` for the first image of a result, ``_restored_2.png`` ... for more."""
    suffix = "" if index == 0 else f"_{index + 1}"
    return out_dir / stem.parent / f"{stem.name}_restored{suffix}.png"


def write_result(png: bytes, photo: Photo, target: Path, *, sixteen_bit: bool) -> Path:
    """Save ``png`` (the server's output) at ``target`` with the scan's metadata; returns ``target``.

    Written to a temporary name first and renamed, so a crash never leaves half a file that a
    re-run would take for a finished one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with Image.open(io.BytesIO(photo.data)) as scan, Image.open(io.BytesIO(png)) as result:
        exif = scan.getexif()
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        icc = scan.info.get("icc_profile") if scan.mode in ("RGB", "RGBA") and result.mode in ("RGB", "RGBA") \
            else None
        if sixteen_bit and photo.sixteen_bit:
            upright = ImageOps.exif_transpose(scan)
            if upright.size == result.size:
                tmp.write_bytes(encode_png16(tone_transfer(_luma16(upright), result.convert("RGB"))))
                tmp.replace(target)
                return target
        kwargs = {}
        if len(exif):
            kwargs["exif"] = exif.tobytes()
        if icc:
            kwargs["icc_profile"] = icc
        result.save(tmp, format="PNG", **kwargs)
    tmp.replace(target)
    return target


def _luma16(img: Image.Image) -> np.ndarray:
    """The scan's brightness as float in [0, 1] at full depth (H, W)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return np.asarray(img, dtype=np.float64) / 65535.0
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return arr @ np.array([0.299, 0.587, 0.114])


def tone_transfer(luma: np.ndarray, result: Image.Image) -> np.ndarray:
    """uint16 (H, W, 3): the result's colours rescaled so their brightness equals ``luma``."""
    rgb = np.asarray(result, dtype=np.float64) / 255.0
    y = rgb @ np.array([0.299, 0.587, 0.114])
    scale = np.where(y > 1e-4, luma / np.maximum(y, 1e-4), 0.0)[..., None]
    out = np.where(y[..., None] > 1e-4, rgb * scale, luma[..., None])
    return np.round(np.clip(out, 0.0, 1.0) * 65535.0).astype(np.uint16)


def encode_png16(rgb: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of ``rgb`` (uint16, H x W x 3); Pillow writes only 8-bit RGB PNGs."""
    height, width, _ = rgb.shape
    rows = rgb.astype(">u2").reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
