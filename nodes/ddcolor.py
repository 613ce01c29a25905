"""DDColor nodes: a model loader (with first-use download) and a batched colorize node.

Thin adapters: checkpoint handling and the pipeline live in ``restoration/ddcolor`` (plain torch);
here they meet ComfyUI's model folders, memory management, progress bar and interrupts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..restoration.clipping import clipping_note
from ..restoration.ddcolor.files import OFFICIAL_CHECKPOINTS, is_official, official_remote
from ..restoration.ddcolor.loading import LoadedDDColor, load_ddcolor
from ..restoration.ddcolor.options import MAX_SIZE, MIN_SIZE, PRECISIONS, PRESETS, SIZE_STEP, resolve_options
from ..restoration.ddcolor.pipeline import MAX_CHUNK, colorize, working_memory
from ..restoration.ddcolor.upsample import AB_UPSAMPLE_METHODS
from . import comfy_bridge
from .managed_model import ManagedModel
from .weights_download import download_weights

log = logging.getLogger(__name__)

MODEL_FOLDER = "ddcolor"
CATEGORY = "restoration-governor/colorize"
DEFAULT_CHECKPOINT = "ddcolor_modelscope.pth"
FREE_MEMORY_SHARE = 0.8  # of the memory left after loading the model, what one chunk may plan to use
# On a CPU a batched forward is no faster per photo than one at a time at 512 (bench/ddcolor.py) and
# needs batch-times the RAM, so CPU runs go one photo at a time; GPUs take chunks of up to MAX_CHUNK.
MAX_CHUNK_CPU = 1


class DDColorModel:
    """What travels along a DDCOLOR_MODEL wire: the checked model and its ComfyUI memory handle."""

    def __init__(self, loaded: LoadedDDColor, managed: ManagedModel) -> None:
        self.loaded = loaded
        self.managed = managed

    def __repr__(self) -> str:
        return f"<{self.loaded.description}>"


def checkpoint_choices() -> list[str]:
    """Files in models/ddcolor (and extra_model_paths.yaml folders) plus the official names not there yet."""
    try:
        local = list(comfy_bridge.folder_paths().get_filename_list(MODEL_FOLDER))
    except (ImportError, KeyError):
        local = []
    return local + sorted(name for name in OFFICIAL_CHECKPOINTS if name not in local)


def resolve_checkpoint(name: str) -> Path:
    """The local path of ``name``, downloading an official checkpoint on first use."""
    folder_paths = comfy_bridge.folder_paths()
    found = folder_paths.get_full_path(MODEL_FOLDER, name)
    if found:
        return Path(found)
    folders = folder_paths.get_folder_paths(MODEL_FOLDER)
    if not is_official(name):
        raise FileNotFoundError(f"DDColor checkpoint {name!r} is not in {', '.join(folders)}; put the file there "
                                f"or pick one of the official names ({', '.join(OFFICIAL_CHECKPOINTS)})")
    return download_weights(official_remote(name), folders[0])


class DDColorModelLoader:
    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's API
        choices = checkpoint_choices()
        return {
            "required": {
                "model_name": (choices, {
                    "default": DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in choices else choices[0],
                    "tooltip": "A checkpoint in models/ddcolor. The four official ones are listed even when "
                               "missing and are downloaded on first use: modelscope (default, vivid), artistic "
                               "(calmer, fewer red blotches), paper, paper_tiny (4x smaller and faster).",
                }),
            }
        }

    RETURN_TYPES = ("DDCOLOR_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The DDColor model, managed by ComfyUI's memory management.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads a DDColor colorization checkpoint (downloading an official one on first use)."

    def load(self, model_name: str):
        loaded = load_ddcolor(resolve_checkpoint(model_name))
        log.info("DDColor: loaded %s", loaded.description)
        return (DDColorModel(loaded, ManagedModel(loaded.module)),)


class DDColorColorize:
    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's API
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Black-and-white (or faded colour) photos; a batch is colorized in "
                                               "chunks that fit the GPU."}),
                "model": ("DDCOLOR_MODEL",),
                "preset": (list(PRESETS), {
                    "default": "person",
                    "tooltip": "person: model size 512, faces in face_mask get one consistent tone. building: "
                               "size 1024 with guided ab upsampling (crisp brick and window edges). custom: "
                               "input_size and ab_upsample as set.",
                }),
                "input_size": ("INT", {
                    "default": 512, "min": MIN_SIZE, "max": MAX_SIZE, "step": SIZE_STEP,
                    "tooltip": "Model resolution for the custom preset (multiple of 32; other values are rounded). "
                               "Larger keeps small structures, costs memory quadratically.",
                }),
                "ab_upsample": (list(AB_UPSAMPLE_METHODS), {
                    "default": "guided",
                    "tooltip": "How colour returns to full resolution: nearest (the official pipeline), bilinear, "
                               "guided (edge-aware, follows the photo's own edges; least colour bleeding). The "
                               "building preset always uses guided.",
                }),
                "keep_aspect": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Off: the official square resize. On: long side = size, short side to the nearest "
                               "multiple of 32 (no squashing, less compute for non-square photos).",
                }),
                "clamp_ab": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Clamp predicted colour to the Lab range (-128..127); removes the red/blue blotches "
                               "of out-of-range predictions. Off = official behaviour.",
                }),
                "precision": (list(PRECISIONS), {
                    "default": "auto",
                    "tooltip": "auto: bf16 on CUDA GPUs that support it (faster, half the activation memory), fp32 "
                               "elsewhere. fp16 is not offered: DDColor is not known to be safe in fp16.",
                }),
            },
            "optional": {
                "face_mask": ("MASK", {"tooltip": "Face areas (e.g. the GPEN node's mask): each face gets one "
                                                  "consistent skin tone, feathered at the edge."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The colorized photos (the photo's own luminance, DDColor's colour).",)
    FUNCTION = "colorize"
    CATEGORY = CATEGORY
    DESCRIPTION = "Colorizes black-and-white photos with DDColor, batched on the GPU."

    def colorize(self, image: torch.Tensor, model: DDColorModel, preset: str, input_size: int, ab_upsample: str,
                 keep_aspect: bool, clamp_ab: bool, precision: str, face_mask: torch.Tensor | None = None,
                 unique_id: str | None = None):
        mm = comfy_bridge.model_management()
        device = torch.device(model.managed.load_device)
        bf16_native = device.type == "cuda" and torch.cuda.is_bf16_supported()
        options, notes = resolve_options(preset=preset, input_size=input_size, ab_upsample=ab_upsample,
                                         keep_aspect=keep_aspect, clamp_ab=clamp_ab, precision=precision,
                                         device_type=device.type, bf16_supported=bf16_native)
        if precision == "bf16" and device.type == "cpu":
            notes.append("bf16 on the CPU is much slower than fp32 on most CPUs (no native bf16 matmul)")
        clipped = clipping_note(image)
        if clipped:
            notes.append(clipped)
        _tell_user(notes, unique_id)

        total, height, width = image.shape[:3]
        chunk = max(1, min(total, MAX_CHUNK_CPU if device.type == "cpu" else MAX_CHUNK))
        model.managed.load(working_memory(height, width, options, chunk))
        per_image = working_memory(height, width, options, 1)
        fits = int(mm.get_free_memory(device) * FREE_MEMORY_SHARE) // max(per_image, 1)
        chunk = max(1, min(chunk, fits))
        log.info("DDColor: %d image(s) %dx%d, model at %s, %s, chunks of %d on %s", total, width, height,
                 options.input_size, options.precision, chunk, device)

        bar = comfy_bridge.comfy_utils().ProgressBar(total)

        def on_oom(smaller: int) -> None:
            log.warning("DDColor: out of memory, retrying with chunks of %d", smaller)
            mm.soft_empty_cache()

        result = colorize(
            image, model.managed.module, options, face_mask=face_mask, device=device, chunk_size=chunk,
            output_device=mm.intermediate_device(), before_chunk=comfy_bridge.throw_if_interrupted,
            after_chunk=lambda done: bar.update_absolute(done, total), on_oom=on_oom,
        )
        output: dict = {"result": (result,)}
        if notes:  # also in the prompt's history, where API clients see it
            output["ui"] = {"text": ["; ".join(notes)]}
        return output


def _tell_user(notes: list[str], node_id: str | None) -> None:
    """Log each note and show it on the node."""
    if not notes:
        return
    text = "; ".join(notes)
    log.warning("DDColor Colorize: %s", text)
    comfy_bridge.show_node_text(text, node_id)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "DDColorModelLoader": DDColorModelLoader,
    "DDColorColorize": DDColorColorize,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "DDColorModelLoader": "DDColor Model Loader",
    "DDColorColorize": "DDColor Colorize",
}
