"""Photo file nodes: load any bit depth / mode Pillow opens, save 8- or 16-bit PNG.

Thin adapters over :mod:`restoration.imageio`; here they meet ComfyUI's input/output folders,
the upload widget and the prompt metadata, the way core ``LoadImage`` / ``SaveImage`` do.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os

import torch

from ..restoration.imageio import decode_image, encode_png
from . import comfy_bridge

log = logging.getLogger("restoration_governor.images")

CATEGORY = "restoration-governor/image"
BIT_DEPTHS = ("8", "16")


class RestorationLoadImage:
    DESCRIPTION = (
        "Loads a photo from ComfyUI's input folder at its real bit depth: 16-bit grayscale and colour "
        "scans (PNG/TIFF), 32-bit and float images, palette, CMYK, with EXIF orientation and the embedded "
        "ICC profile converted to sRGB. Alpha becomes the MASK. Use it instead of Load Image for scans: "
        "core Load Image clips 16-bit grayscale to white."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI API
        folder_paths = comfy_bridge.folder_paths()
        input_dir = folder_paths.get_input_directory()
        names = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        names = folder_paths.filter_files_content_types(names, ["image"])
        return {"required": {"image": (sorted(names), {
            "image_upload": True,
            "tooltip": "A photo in ComfyUI's input folder (or upload one). Every mode Pillow opens is "
                       "scaled to 0..1 by its real range (16-bit by 65535).",
        })}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = ("The photo (RGB, every frame of the first frame's size as a batch).",
                       "1 where the photo is transparent (1 − alpha), else 0.")
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, image: str, unique_id: str | None = None):
        path = comfy_bridge.folder_paths().get_annotated_filepath(image)
        decoded = decode_image(path)
        summary = f"{decoded.bit_depth}-bit, {decoded.images.shape[2]}×{decoded.images.shape[1]}"
        if decoded.images.shape[0] > 1:
            summary += f", {decoded.images.shape[0]} frames"
        if decoded.notes:
            summary += "; " + "; ".join(decoded.notes)
            log.warning("Load Photo %s: %s", image, summary)
        comfy_bridge.show_node_text(summary, unique_id)
        return (decoded.images, decoded.masks)

    @classmethod
    def IS_CHANGED(cls, image: str, **_):  # noqa: N802 - ComfyUI API
        path = comfy_bridge.folder_paths().get_annotated_filepath(image)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image: str):  # noqa: N802 - ComfyUI API
        if not comfy_bridge.folder_paths().exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


class RestorationSaveImage:
    DESCRIPTION = (
        "Saves images as PNG in ComfyUI's output folder, at 8 bits per channel (like Save Image) or 16 bits, "
        "so restored archive scans keep their depth. The workflow is embedded as Save Image does."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI API
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {
                    "default": "restored",
                    "tooltip": "File name prefix; may contain a subfolder and %date:yyyy-MM-dd% like Save Image.",
                }),
                "bit_depth": (list(BIT_DEPTHS), {
                    "default": "16",
                    "tooltip": "16: 65536 levels per channel (archival, 2× the file size). 8: like Save Image.",
                }),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def save(self, images: torch.Tensor, filename_prefix: str = "restored", bit_depth: str = "16",
             prompt=None, extra_pnginfo=None):
        if bit_depth not in BIT_DEPTHS:
            raise ValueError(f"bit_depth must be one of {', '.join(BIT_DEPTHS)}, got {bit_depth!r}")
        folder_paths = comfy_bridge.folder_paths()
        output_dir = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, images.shape[2], images.shape[1])
        text = _metadata(prompt, extra_pnginfo)
        results = []
        for batch_number, image in enumerate(images):
            name = filename.replace("%batch_num%", str(batch_number))
            file = f"{name}_{counter:05}_.png"
            data = encode_png(image, int(bit_depth), text)
            with open(os.path.join(folder, file), "wb") as f:
                f.write(data)
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


def _metadata(prompt, extra_pnginfo) -> dict[str, str]:
    """The prompt / workflow text chunks core SaveImage writes, unless --disable-metadata is set."""
    try:
        args = importlib.import_module("comfy.cli_args").args
        if args.disable_metadata:
            return {}
    except ImportError:
        pass
    text = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    return text


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "RestorationLoadImage": RestorationLoadImage,
    "RestorationSaveImage": RestorationSaveImage,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "RestorationLoadImage": "Load Photo (any bit depth)",
    "RestorationSaveImage": "Save Image (8/16-bit PNG)",
}
