"""Draw the template thumbnails and the example photo (no real photos: everything is synthetic).

    .venv/bin/python scripts/template_art.py

writes ``example_workflows/<template>.jpg`` (the template browser's card: the scan on the left
half, the restored look on the right) and ``example_workflows/restoration-example.png`` (a small
grayscale "old photo" the templates' Load Image node opens with). Deterministic: same pixels on
every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PACK = Path(__file__).resolve().parent.parent
OUT = PACK / "example_workflows"
SIZE = 512
# ComfyUI's template browser shows a pack template's file name as its description (no field for one),
# so each card says what it does in its picture, in English and Chinese.
CAPTIONS = {
    "DDColor Person Restore": ("Colourise portraits and family photos", "人像与家庭照片上色"),
    "DDColor Building Restore": ("Colourise houses, streets, landscapes", "建筑、街景与风景上色"),
    "GPEN Portrait Enhance": ("Repair blurred and damaged faces", "修复模糊、受损的人脸"),
    "Old Photo Restore (GPEN + DDColor)": ("Repair the faces, then colourise", "先修复人脸，再上色"),
}
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def portrait(size: int = SIZE) -> Image.Image:
    img = Image.new("RGB", (size, size), (86, 110, 138))
    d = ImageDraw.Draw(img)
    for y in range(size):  # studio backdrop: a soft vertical gradient
        shade = int(40 * y / size)
        d.line([(0, y), (size, y)], fill=(96 - shade, 122 - shade, 150 - shade))
    s = size / 512
    d.ellipse([100 * s, 330 * s, 412 * s, 620 * s], fill=(54, 72, 120))           # jacket
    d.polygon([(226 * s, 340 * s), (286 * s, 340 * s), (256 * s, 420 * s)], fill=(236, 232, 222))  # collar
    d.rectangle([232 * s, 280 * s, 280 * s, 350 * s], fill=(222, 176, 146))       # neck
    d.ellipse([168 * s, 110 * s, 344 * s, 320 * s], fill=(230, 186, 156))         # face
    d.chord([160 * s, 88 * s, 352 * s, 250 * s], 180, 360, fill=(92, 62, 40))     # hair
    for x in (214, 282):
        d.ellipse([(x - 12) * s, 196 * s, (x + 12) * s, 212 * s], fill=(250, 250, 248))
        d.ellipse([(x - 6) * s, 198 * s, (x + 6) * s, 210 * s], fill=(70, 90, 60))
    d.arc([222 * s, 238 * s, 290 * s, 288 * s], 20, 160, fill=(170, 80, 80), width=max(1, int(5 * s)))
    return img


def building(size: int = SIZE) -> Image.Image:
    img = Image.new("RGB", (size, size), (150, 190, 228))
    d = ImageDraw.Draw(img)
    s = size / 512
    d.rectangle([0, 380 * s, size, size], fill=(92, 140, 70))                      # lawn
    d.rectangle([96 * s, 200 * s, 416 * s, 400 * s], fill=(176, 84, 62))          # brick walls
    d.polygon([(76 * s, 206 * s), (256 * s, 90 * s), (436 * s, 206 * s)], fill=(70, 62, 66))  # roof
    for x in (130, 330):
        d.rectangle([x * s, 240 * s, (x + 52) * s, 300 * s], fill=(238, 236, 226))
        d.rectangle([(x + 6) * s, 246 * s, (x + 46) * s, 294 * s], fill=(90, 130, 170))
        d.line([((x + 26) * s, 246 * s), ((x + 26) * s, 294 * s)], fill=(238, 236, 226), width=max(1, int(4 * s)))
    d.rectangle([226 * s, 300 * s, 286 * s, 400 * s], fill=(60, 90, 60))          # door
    d.ellipse([380 * s, 40 * s, 450 * s, 110 * s], fill=(250, 232, 160))          # sun
    return img


def aged(img: Image.Image, seed: int, blur: float = 1.2) -> Image.Image:
    """The same scene as an old print: gray, soft, faded, grain and scratches."""
    rng = np.random.default_rng(seed)
    gray = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(blur)), dtype=np.float64)
    gray = 60 + gray * 0.62 + rng.normal(0, 9, gray.shape)
    h, w = gray.shape
    for _ in range(7):  # scratches
        x = rng.integers(0, w)
        gray[:, max(0, x - 1):x + 1] += rng.uniform(30, 70)
    yy, xx = np.mgrid[0:h, 0:w]
    vignette = 1 - 0.35 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2) * 2
    return Image.fromarray(np.clip(gray * vignette, 0, 255).astype(np.uint8), "L")


def sepia(gray: Image.Image) -> Image.Image:
    g = np.asarray(gray, dtype=np.float64) / 255
    rgb = np.stack([g * 240 + 15, g * 215 + 12, g * 170 + 8], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def split(before: Image.Image, after: Image.Image) -> Image.Image:
    """Left half ``before``, right half ``after``, a white divider: what the card should show."""
    card = after.convert("RGB").copy()
    half = card.width // 2
    card.paste(before.convert("RGB").crop((0, 0, half, card.height)), (0, 0))
    d = ImageDraw.Draw(card)
    d.rectangle([half - 2, 0, half + 1, card.height], fill=(255, 255, 255))
    d.polygon([(half - 14, card.height // 2), (half - 4, card.height // 2 - 10), (half - 4, card.height // 2 + 10)],
              fill=(255, 255, 255))
    d.polygon([(half + 14, card.height // 2), (half + 4, card.height // 2 - 10), (half + 4, card.height // 2 + 10)],
              fill=(255, 255, 255))
    return card


def caption(card: Image.Image, english: str, chinese: str) -> Image.Image:
    """A dark band along the bottom with the two one-line descriptions."""
    band = Image.new("RGBA", (card.width, 84), (16, 16, 16, 200))
    out = card.convert("RGBA")
    out.alpha_composite(band, (0, card.height - band.height))
    d = ImageDraw.Draw(out)
    d.text((18, card.height - 76), english, font=ImageFont.truetype(LATIN_FONT, 25), fill=(255, 255, 255))
    d.text((18, card.height - 40), chinese, font=ImageFont.truetype(CJK_FONT, 25), fill=(225, 225, 225))
    return out.convert("RGB")


def main() -> None:
    face, house = portrait(), building()
    cards = {
        "DDColor Person Restore": split(aged(face, 1, 0.6), face),
        "DDColor Building Restore": split(aged(house, 2, 0.6), house),
        "GPEN Portrait Enhance": split(aged(face, 3, 4.0).convert("RGB"), face.convert("L").convert("RGB")),
        "Old Photo Restore (GPEN + DDColor)": split(sepia(aged(face, 4, 4.0)), face),
    }
    for name, card in cards.items():
        card = caption(card, *CAPTIONS[name])
        card.save(OUT / f"{name}.jpg", quality=82, optimize=True, progressive=True)
    example = aged(portrait(384), 5, 1.5).crop((32, 16, 352, 368))  # 320 x 352, grayscale
    example.save(OUT / "restoration-example.png", optimize=True)


if __name__ == "__main__":
    main()
