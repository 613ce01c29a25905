"""Decode a photo file into ComfyUI's IMAGE and MASK at its real bit depth (no ComfyUI imports).

Core ``LoadImage`` turns every frame into 8-bit RGB and divides by 255, so a 16-bit grayscale scan
(Pillow mode ``I;16``, values up to 65535) clips to white. Here every mode Pillow opens is scaled to
[0, 1] by the range that mode really has:

* ``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: 8 bits, / 255;
* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``: / 65535;
* ``I`` (32-bit integer): / 65535 when every value fits 16 bits (old Pillow's 16-bit PNGs), else / (2³² − 1);
* ``F`` (float): taken as 0..1; a file with larger values is divided by its maximum (reported in the notes);
* 16-bit-per-channel colour PNG / TIFF, which Pillow reduces to 8 bits, are read at 16 bits with
  OpenCV when it is installed (facexlib depends on it), else at Pillow's 8 bits (reported).

EXIF orientation is applied (``ImageOps.exif_transpose``), alpha becomes the MASK (``1 − alpha``, as
core does), an embedded ICC profile is converted to sRGB with Pillow's ``ImageCms``. Multi-frame
files give one batch entry per frame of the first frame's size (other sizes are skipped, as core
does; MPO files give their first frame only).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, ImageSequence

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
SINGLE_FRAME_FORMATS = ("MPO",)  # core's list: the extra frames are previews, not pages
_ALPHA_MODES = {"LA": "RGBA", "La": "RGBA", "PA": "RGBA", "RGBA": "RGBA", "RGBa": "RGBA"}


class ImageDecodeError(ValueError):
    """The file is not an image Pillow can open, or no frame could be decoded; the message names it."""


@dataclass
class DecodedImage:
    """``images`` (B, H, W, 3) float32 in [0, 1]; ``masks`` (B, H, W) float32, 1 = transparent."""

    images: torch.Tensor
    masks: torch.Tensor
    bit_depth: int  # the largest bits per sample among the frames: 1, 8, 16 or 32
    notes: list[str] = field(default_factory=list)


@dataclass
class _Frame:
    rgb: np.ndarray  # (H, W, 3) float32
    alpha: np.ndarray | None  # (H, W) float32, 1 = opaque
    bits: int


def decode_image(path: str | os.PathLike[str]) -> DecodedImage:
    """All frames of ``path`` as IMAGE + MASK batches. Raises :class:`ImageDecodeError`."""
    name = os.path.basename(os.fspath(path))
    try:
        source = Image.open(path)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{name} is not an image Pillow can open ({e})") from e
    notes: list[str] = []
    frames: list[_Frame] = []
    with source:
        iterator = [source] if source.format in SINGLE_FRAME_FORMATS else ImageSequence.Iterator(source)
        try:
            for frame in iterator:
                decoded = _decode_frame(frame, path, notes)
                if frames and decoded.rgb.shape[:2] != frames[0].rgb.shape[:2]:
                    notes.append(f"frame {len(frames) + 1} has another size than the first: skipped")
                    continue
                frames.append(decoded)
        except (OSError, SyntaxError, ValueError) as e:
            if not frames:
                raise ImageDecodeError(f"{name} could not be decoded ({e}); the file may be truncated") from e
            notes.append(f"decoding stopped after frame {len(frames)}: {e}")
    images = torch.from_numpy(np.stack([f.rgb for f in frames]))
    masks = torch.from_numpy(np.stack([
        1.0 - f.alpha if f.alpha is not None else np.zeros(f.rgb.shape[:2], np.float32) for f in frames
    ]))
    return DecodedImage(images, masks, max(f.bits for f in frames), _unique(notes))


def _decode_frame(frame: Image.Image, path: str | os.PathLike[str], notes: list[str]) -> _Frame:
    reduced = _reduced_to_8_bits(frame)  # before getexif(), which loads a PNG (and drops its tile list)
    orientation = frame.getexif().get(0x0112, 1)
    deep = _sixteen_bit_colour(frame, path, orientation) if reduced else None
    if deep is not None:
        if frame.info.get("icc_profile"):
            notes.append("the embedded ICC profile was not applied to the 16-bit colour data (Pillow's "
                         "colour management works at 8 bits); colours are taken as sRGB")
        return deep
    frame = ImageOps.exif_transpose(frame)
    if reduced:
        notes.append("16-bit colour was read at 8 bits (install opencv-python to keep 16 bits)")
    mode = frame.mode
    if mode in SIXTEEN_BIT_MODES:
        _note_icc_skipped(frame, notes)
        return _gray(np.asarray(frame).astype(np.float32) / 65535.0, None, 16)
    if mode == "I":
        _note_icc_skipped(frame, notes)
        values = np.asarray(frame).astype(np.float64)
        if values.size and values.min() >= 0 and values.max() <= 65535:
            return _gray((values / 65535.0).astype(np.float32), None, 16)
        return _gray((np.clip(values, 0, None) / 4294967295.0).astype(np.float32), None, 32)
    if mode == "F":
        _note_icc_skipped(frame, notes)
        values = np.nan_to_num(np.asarray(frame, dtype=np.float32))
        top = float(values.max()) if values.size else 0.0
        if top > 1.0:
            notes.append(f"floating-point image with values up to {top:g}: divided by its maximum")
            values = values / top
        return _gray(np.clip(values, 0.0, 1.0), None, 32)
    return _eight_bit(frame, notes)


def _eight_bit(frame: Image.Image, notes: list[str]) -> _Frame:
    """Every 8-bit mode (and ``1``) → sRGB float, alpha kept; ICC profiles converted with ImageCms."""
    mode = frame.mode
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in frame.info) \
        or (mode in ("L", "RGB") and "transparency" in frame.info)
    alpha = None
    if has_alpha:
        alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    icc = frame.info.get("icc_profile")
    if icc:
        converted = _to_srgb(frame, icc, notes)
        if converted is not None:
            return _Frame(np.asarray(converted, dtype=np.float32) / 255.0, alpha, 8)
    if mode in ("1", "L", "LA", "La"):
        gray = np.asarray(frame.convert("L"), dtype=np.float32) / 255.0
        return _gray(gray, alpha, 1 if mode == "1" else 8)
    rgb = frame.convert("RGBA").convert("RGB") if mode in ("P", "PA") else frame.convert("RGB")
    return _Frame(np.asarray(rgb, dtype=np.float32) / 255.0, alpha, 8)


def _to_srgb(frame: Image.Image, icc: bytes, notes: list[str]) -> Image.Image | None:
    """``frame`` converted from its embedded profile to sRGB (RGB mode), or None with a note."""
    mode = frame.mode
    source = frame
    if mode in ("P", "PA", "1", "RGBa", "RGBX", "YCbCr", "HSV"):
        source = frame.convert("RGB")
    elif mode in ("LA", "La"):
        source = frame.convert("L")
    elif mode == "RGBA":
        source = frame.convert("RGB")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(source, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        notes.append(f"the embedded ICC profile could not be applied ({e}); colours are taken as sRGB")
        return None


def _sixteen_bit_colour(frame: Image.Image, path: str | os.PathLike[str], orientation: int) -> _Frame | None:
    """A 16-bit RGB(A) PNG/TIFF at full depth through OpenCV, or None (not such a file / no OpenCV)."""
    if getattr(frame, "n_frames", 1) > 1:
        return None
    try:
        import cv2
    except ImportError:
        return None
    raw = np.fromfile(os.fspath(path), dtype=np.uint8)  # imdecode, not imread: non-ASCII paths on Windows
    data = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] not in (3, 4):
        return None
    values = data.astype(np.float32) / 65535.0
    rgb = np.ascontiguousarray(values[..., 2::-1])  # OpenCV's BGR(A) → RGB
    alpha = values[..., 3] if data.shape[2] == 4 else None
    rgb, alpha = _orient(rgb, orientation), _orient(alpha, orientation) if alpha is not None else None
    return _Frame(rgb, alpha, 16)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 applied to an (H, W, ...) array, as ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


def _reduced_to_8_bits(frame: Image.Image) -> bool:
    """True for 16-bit-per-channel colour data that Pillow decodes into an 8-bit RGB(A) image."""
    if frame.mode not in ("RGB", "RGBA"):
        return False
    bits = getattr(frame, "tag_v2", {}).get(258) if frame.format == "TIFF" else None
    if bits is not None:
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    tile = getattr(frame, "tile", None) or []
    rawmode = tile[0][3] if tile and len(tile[0]) > 3 else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    return isinstance(rawmode, str) and ";16" in rawmode


def _gray(gray: np.ndarray, alpha: np.ndarray | None, bits: int) -> _Frame:
    return _Frame(np.repeat(gray[..., None], 3, axis=-1), alpha, bits)


def _note_icc_skipped(frame: Image.Image, notes: list[str]) -> None:
    if frame.info.get("icc_profile"):
        notes.append(f"the embedded ICC profile was not applied to the {frame.mode} data (Pillow's colour "
                     "management works at 8 bits); values are taken as sRGB")


def _unique(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def encode_png(image: torch.Tensor, bit_depth: int = 8, text: dict[str, str] | None = None,
               compress_level: int = 4) -> bytes:
    """One IMAGE (H, W, C) in [0, 1], C = 1, 3 or 4, as PNG bytes at 8 or 16 bits per channel.

    ``text`` entries become tEXt chunks (ComfyUI's ``prompt`` / ``workflow`` metadata). 16-bit colour
    is written by OpenCV (Pillow has no 16-bit RGB mode); 16-bit gray by Pillow.
    Raises ``ValueError`` for another bit depth or channel count.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected one image (H, W, 1|3|4), got shape {tuple(image.shape)}")
    values = image.detach().float().cpu().clamp(0.0, 1.0).numpy()
    top = 65535.0 if bit_depth == 16 else 255.0
    ints = np.rint(values * top).astype(np.uint16 if bit_depth == 16 else np.uint8)
    channels = ints.shape[-1]
    if bit_depth == 8 or channels == 1:
        pil = Image.fromarray(ints[..., 0] if channels == 1 else ints)
        info = _png_info(text)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
        return buffer.getvalue()
    try:
        import cv2
    except ImportError as e:
        raise ValueError("16-bit colour PNG needs OpenCV (pip install opencv-python)") from e
    bgr = ints[..., [2, 1, 0, 3]] if channels == 4 else ints[..., ::-1]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return _with_text_chunks(encoded.tobytes(), text or {})


def _png_info(text: dict[str, str] | None):
    if not text:
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    return info


def _with_text_chunks(png: bytes, text: dict[str, str]) -> bytes:
    """``png`` with one tEXt chunk per entry inserted right after IHDR (PNG spec 11.3.4.3)."""
    import struct
    import zlib

    if not text:
        return png
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length + type, IHDR data, CRC
    chunks = b""
    for key, value in text.items():
        body = b"tEXt" + key.encode("latin-1") + b"\0" + value.encode("latin-1", errors="replace")
        chunks += struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return png[:ihdr_end] + chunks + png[ihdr_end:]
