"""Upload checks: sniffed format, size, pixel count (governor/uploads.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from restoration_governor.governor.config import GovernorConfig, apply_patch
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.uploads import check_image_upload


def _image(fmt: str, size=(32, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, fmt)
    return buf.getvalue()


def test_upload_checks_sniff_the_bytes():
    cfg = GovernorConfig()
    check_image_upload(_image("PNG"), "a.png", cfg)
    check_image_upload(_image("JPEG"), "renamed.png", cfg)  # the name does not matter, the bytes do
    for data, kind in [(b"GIF89a....", "upload_not_an_image"), (_image("GIF"), "upload_format_not_allowed")]:
        with pytest.raises(GovernorError) as e:
            check_image_upload(data, "x.png", cfg)
        assert e.value.type == kind and e.value.status == 400
    with pytest.raises(GovernorError) as e:
        check_image_upload(_image("PNG", (400, 300)), "big.png", apply_patch(cfg, {"upload_max_pixels": 1000}))
    assert e.value.type == "upload_too_many_pixels"
    with pytest.raises(GovernorError) as e:
        check_image_upload(b"\0" * 100, "x.png", apply_patch(cfg, {"upload_max_bytes": 10}))
    assert e.value.status == 413


def test_a_decompression_bomb_is_refused_with_its_dimensions():
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 20000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(GovernorError) as e:
        check_image_upload(bomb, "bomb.png", GovernorConfig())
    assert e.value.type == "upload_too_many_pixels"
    assert "30000x20000 = 600000000 pixels" in e.value.details
    assert (e.value.extra_info["width"], e.value.extra_info["height"]) == (30000, 20000)


def test_names_that_would_leave_the_input_folder_are_recognised():
    from restoration_governor.governor.uploads import escapes_input_folder

    for name in ("../../evil.png", "a/b.png", "..\\x.png", "/etc/passwd", "C:evil.png"):
        assert escapes_input_folder(name, allow_subfolders=False), name
    for folder in ("../..", "/abs", "a/../../b"):
        assert escapes_input_folder(folder, allow_subfolders=True), folder
    assert not escapes_input_folder("photo 1.png", allow_subfolders=False)
    assert not escapes_input_folder("albums/1952", allow_subfolders=True)
