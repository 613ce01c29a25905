"""Photo files in every mode Pillow opens reach the pack at their real range (restoration/imageio.py)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from restoration_governor.restoration.imageio import ImageDecodeError, _orient, decode_image, encode_png

RAMP16 = np.round(np.linspace(0, 65535, 384)).astype(np.uint16)[None, :].repeat(256, axis=0)


def _ramp_expected() -> np.ndarray:
    return RAMP16.astype(np.float32) / 65535.0


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_grayscale_ramp_keeps_every_level(tmp_path, suffix):
    path = tmp_path / f"ramp.{suffix}"
    Image.fromarray(RAMP16).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")
    decoded = decode_image(path)
    assert decoded.images.shape == (1, 256, 384, 3) and decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.images[0, ..., 0].numpy(), _ramp_expected(), atol=1e-7)
    assert torch.equal(decoded.images[..., 0], decoded.images[..., 2])
    assert decoded.masks.shape == (1, 256, 384) and float(decoded.masks.abs().max()) == 0.0


def test_big_endian_16_bit_tiff(tmp_path):
    path = tmp_path / "big.tif"
    Image.frombytes("I;16B", (384, 256), RAMP16.astype(">u2").tobytes()).save(path)
    with Image.open(path) as check:
        assert check.mode == "I;16B"
    np.testing.assert_allclose(decode_image(path).images[0, ..., 1].numpy(), _ramp_expected(), atol=1e-7)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_colour_keeps_16_bits_and_channel_order(tmp_path, suffix):
    rgb = np.stack([RAMP16, RAMP16 // 2, 65535 - RAMP16], axis=-1)
    path = tmp_path / f"colour.{suffix}"
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    decoded = decode_image(path)
    assert decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.images[0].numpy(), rgb.astype(np.float32) / 65535.0, atol=1e-7)


def test_16_bit_rgba_alpha_becomes_the_mask(tmp_path):
    rgba = np.stack([RAMP16, RAMP16, RAMP16, np.full_like(RAMP16, 16384)], axis=-1)
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3]])
    decoded = decode_image(path)
    assert decoded.images.shape[-1] == 3
    np.testing.assert_allclose(decoded.masks.numpy(), 1.0 - 16384 / 65535, atol=1e-6)


def test_32_bit_integer_and_float_modes(tmp_path):
    small = tmp_path / "int16range.tif"
    Image.fromarray(RAMP16.astype(np.int32)).save(small)
    with Image.open(small) as check:
        assert check.mode == "I"
    np.testing.assert_allclose(decode_image(small).images[0, ..., 0].numpy(), _ramp_expected(), atol=1e-6)

    unit = tmp_path / "unit.tif"
    Image.fromarray(_ramp_expected()).save(unit)
    decoded = decode_image(unit)
    np.testing.assert_allclose(decoded.images[0, ..., 0].numpy(), _ramp_expected(), atol=1e-7)
    assert decoded.notes == []

    big = tmp_path / "big.tif"
    Image.fromarray(_ramp_expected() * 4.0).save(big)
    decoded = decode_image(big)
    np.testing.assert_allclose(decoded.images[0, ..., 0].numpy(), _ramp_expected(), atol=1e-6)
    assert decoded.notes == ["floating-point image with values up to 4: divided by its maximum"]


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK"])
def test_8_bit_modes_match_pillows_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    source = rgb.convert(mode)
    path = tmp_path / f"m.{'tif' if mode == 'CMYK' else 'png'}"
    source.save(path)
    expected = np.asarray(source.convert("RGB"), dtype=np.float32) / 255.0
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.images[0].numpy(), expected, atol=1e-7)
    assert float(decoded.masks.max()) == 0.0


def test_gray_alpha_and_palette_transparency_become_masks(tmp_path):
    la = Image.merge("LA", [Image.new("L", (8, 6), 200), Image.new("L", (8, 6), 51)])
    la.save(tmp_path / "la.png")
    decoded = decode_image(tmp_path / "la.png")
    np.testing.assert_allclose(decoded.images.numpy(), 200 / 255, atol=1e-7)
    np.testing.assert_allclose(decoded.masks.numpy(), 1 - 51 / 255, atol=1e-7)

    palette = Image.new("P", (8, 6), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 4, 6))
    palette.save(tmp_path / "p.png", transparency=0)
    decoded = decode_image(tmp_path / "p.png")
    assert decoded.masks[0, 0, 0] == 1.0 and decoded.masks[0, 0, 7] == 0.0
    assert decoded.images[0, 0, 7].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("mode", ["RGB", "I;16"])
def test_exif_orientation_is_applied(tmp_path, mode):
    array = np.zeros((20, 30), np.uint8)
    array[0, 0] = 255  # top-left marker
    image = Image.fromarray(array if mode == "RGB" else array.astype(np.uint16) * 257)
    image = image.convert("RGB") if mode == "RGB" else image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "o.png", exif=exif)
    decoded = decode_image(tmp_path / "o.png")
    assert decoded.images.shape[1:3] == (30, 20)
    assert decoded.images[0, 0, 19, 0] == 1.0 and float(decoded.images[0].sum()) == 3.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_array_orientation_matches_pillow(orientation):
    array = np.arange(12 * 7, dtype=np.uint8).reshape(12, 7)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(_orient(array, orientation), expected)


def test_multi_frame_files_give_every_frame_of_the_first_size(tmp_path):
    frames = [Image.new("L", (16, 8), v) for v in (10, 20)] + [Image.new("L", (4, 4), 30), Image.new("L", (16, 8), 40)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    decoded = decode_image(tmp_path / "pages.tif")
    assert decoded.images.shape == (3, 8, 16, 3)
    assert [round(float(v) * 255) for v in decoded.images[:, 0, 0, 0]] == [10, 20, 40]
    assert decoded.notes == ["frame 3 has another size than the first: skipped"]


def _linear_rgb_profile() -> bytes:
    """A minimal ICC v2 display profile: sRGB primaries (D50-adapted), linear (gamma 1.0) curves."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    curve = b"curv\0\0\0\0" + struct.pack(">I", 1) + struct.pack(">H", 0x0100) + b"\0\0"
    text = b"linear"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0" + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    total = offset + len(data)
    header = (struct.pack(">I", total) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def test_an_embedded_icc_profile_is_converted_to_srgb(tmp_path):
    profile = _linear_rgb_profile()
    ImageCms.ImageCmsProfile(__import__("io").BytesIO(profile))  # lcms accepts it
    Image.new("RGB", (8, 8), (128, 128, 128)).save(tmp_path / "linear.png", icc_profile=profile)
    decoded = decode_image(tmp_path / "linear.png")
    # linear 0.502 is sRGB-encoded 0.737 (188/255); without the conversion it would stay 128
    assert abs(float(decoded.images[0, 0, 0, 0]) * 255 - 188) <= 2
    assert decoded.notes == []


def test_a_broken_icc_profile_is_reported_not_fatal(tmp_path):
    Image.new("RGB", (8, 8), (128, 64, 32)).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 10)
    decoded = decode_image(tmp_path / "bad.png")
    assert decoded.images[0, 0, 0].tolist() == pytest.approx([128 / 255, 64 / 255, 32 / 255], abs=1e-7)
    assert decoded.notes and "ICC profile could not be applied" in decoded.notes[0]


def test_a_file_that_is_not_an_image_names_the_file(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ImageDecodeError, match="scan.png"):
        decode_image(tmp_path / "scan.png")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_png_round_trip_with_metadata(tmp_path, channels):
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 65536, (10, 12, channels)).astype(np.float32) / 65535.0
    data = encode_png(torch.from_numpy(levels), 16, {"prompt": '{"1": {}}'})
    path = tmp_path / "out.png"
    path.write_bytes(data)
    with Image.open(path) as check:
        assert check.info["prompt"] == '{"1": {}}'
    read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16
    read = read[..., None] if read.ndim == 2 else read[..., [2, 1, 0, 3][:channels]]
    assert np.array_equal(read, np.rint(levels * 65535).astype(np.uint16))


def test_8_bit_png_is_what_save_image_writes():
    image = torch.tensor([[[0.0, 0.5, 1.0]]])
    with Image.open(__import__("io").BytesIO(encode_png(image, 8))) as check:
        assert check.mode == "RGB" and check.getpixel((0, 0)) == (0, 128, 255)
