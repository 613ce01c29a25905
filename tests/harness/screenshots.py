"""Screenshots that go into docs/: small PNGs."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def small_png(png: bytes, path: Path) -> Path:
    """Save a screenshot for the docs as a 256-colour PNG (a fraction of the size, the same look)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as img:
        img.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
