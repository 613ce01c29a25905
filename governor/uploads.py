"""Checks on ``/upload/image`` and ``/upload/mask``: size, real image format, pixel count.

The format is sniffed from the file's bytes with Pillow (never the name or the Content-Type a
client sends), and the pixel count is read from the header without decoding, so a
decompression bomb is refused before anything allocates its pixels.
"""

from __future__ import annotations

import io
import warnings

from .config import GovernorConfig
from .errors import GovernorError

_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp", "WEBP": "webp", "TIFF": "tiff",
                "GIF": "gif"}


def too_large(size: int, config: GovernorConfig) -> GovernorError:
    return GovernorError(413, "upload_too_large", "Upload too large",
                         f"{size} bytes; the limit is {config.upload_max_bytes} bytes",
                         {"limit": config.upload_max_bytes})


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image header, read by the format's own plugin (``Image.open``
    would refuse it as a bomb before telling the size); None when no plugin reads it."""
    from PIL import Image

    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        try:
            if accept is None or accept(data[:16]):
                with factory(io.BytesIO(data), "upload") as img:
                    return img.size
        except Exception:  # not this format: try the next
            continue
    return None


def check_image_upload(data: bytes, filename: str, config: GovernorConfig) -> None:
    """Raise GovernorError (400/413) unless ``data`` is an allowed image within the limits."""
    if len(data) > config.upload_max_bytes:
        raise too_large(len(data), config)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = _PIL_FORMATS.get(img.format or "", (img.format or "unknown").lower())
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        size = _header_size(data)
        limit = min(config.upload_max_pixels, Image.MAX_IMAGE_PIXELS or config.upload_max_pixels)
        shown = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else "more pixels than Pillow opens"
        raise GovernorError(400, "upload_too_many_pixels", "Image has too many pixels",
                            f"{filename!r} is {shown} (a decompression bomb); the limit is {limit}",
                            {"limit": limit, "width": size[0] if size else None,
                             "height": size[1] if size else None}) from None
    except Exception:
        raise GovernorError(400, "upload_not_an_image", "Not an image",
                            f"{filename!r} is not an image Pillow can read",
                            {"allowed": list(config.upload_formats)}) from None
    if fmt not in config.upload_formats:
        raise GovernorError(400, "upload_format_not_allowed", "Image format not allowed",
                            f"{filename!r} is {fmt}; allowed: {', '.join(config.upload_formats)}",
                            {"format": fmt, "allowed": list(config.upload_formats)})
    if width * height > config.upload_max_pixels:
        raise GovernorError(400, "upload_too_many_pixels", "Image has too many pixels",
                            f"{filename!r} is {width}x{height} = {width * height} pixels; "
                            f"the limit is {config.upload_max_pixels}",
                            {"width": width, "height": height, "limit": config.upload_max_pixels})


def escapes_input_folder(name: str, *, allow_subfolders: bool) -> bool:
    """Whether an upload's file name (or subfolder) would leave the input folder."""
    parts = name.replace("\\", "/").split("/")
    if not allow_subfolders and len(parts) > 1:
        return True
    return name.startswith(("/", "\\")) or ":" in name or any(p == ".." for p in parts)
