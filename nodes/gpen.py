"""GPEN face restoration nodes: model loader, whole-photo face restoration, aligned-crop restoration.

Thin adapters: model files are found (or downloaded) through ComfyUI's ``folder_paths``, the three
networks (generator, RetinaFace detector, ParseNet parser) join ComfyUI's model management, and the
work itself is ``restoration.gpen.pipeline``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ..governor.comfy_features import has_dynamic_vram
from ..restoration.batching import is_out_of_memory
from ..restoration.download import RemoteFile
from ..restoration.gpen import files
from ..restoration.gpen.loading import load_generator, looks_like_gpen_file, read_state_dict
from ..restoration.gpen.memory import faces_per_chunk, working_memory
from ..restoration.gpen.network import GPENConfig
from . import comfy_bridge
from .managed_model import ManagedModel
from .weights_download import download_missing

log = logging.getLogger("restoration_governor.gpen")

CATEGORY = "restoration-governor/GPEN"
MODEL_FOLDERS = ("gpen", "facerestore_models")  # where GPEN generators are looked for, in this order
HELPER_FOLDER = "facedetection"
DEFAULT_MODEL = "GPEN-BFR-512.pth"
RESIZE_FILTERS = ("bilinear (official)", "antialiased")


@dataclass
class GPENModel:
    """What travels on a ``GPEN_MODEL`` link."""

    name: str
    config: GPENConfig
    managed: ManagedModel

    @property
    def size(self) -> int:
        return self.config.size


# -- model files --------------------------------------------------------------------------------------

def list_generator_files() -> list[str]:
    """GPEN files in models/gpen (all) and models/facerestore_models (GPEN-shaped ones), then the downloadable names."""
    fp = comfy_bridge.folder_paths()
    names: list[str] = []
    for folder in MODEL_FOLDERS:
        for name in fp.get_filename_list(folder):
            if name in names:
                continue
            if folder != "gpen" and not _is_gpen_file(fp.get_full_path(folder, name), name):
                continue
            names.append(name)
    names.sort(key=str.lower)
    names += [name for name in files.OFFICIAL_GENERATORS if name not in names]
    return names


def _is_gpen_file(path: str | None, name: str) -> bool:
    if path is None:
        return False
    verdict = looks_like_gpen_file(path)
    return verdict if verdict is not None else "gpen" in name.lower()


def resolve_generator(name: str) -> str:
    """Full path of a listed generator, downloading an official one on first use.

    If that download fails, the error also lists the face helper files GPEN Restore Faces will need
    that are missing, so an offline user learns every missing file from one run.
    """
    fp = comfy_bridge.folder_paths()
    for folder in MODEL_FOLDERS:
        path = fp.get_full_path(folder, name)
        if path is not None:
            return path
    remote = files.OFFICIAL_GENERATORS.get(name)
    if remote is None:
        searched = ", ".join(p for folder in MODEL_FOLDERS for p in fp.get_folder_paths(folder))
        raise FileNotFoundError(f"GPEN model {name!r} was not found in {searched}")
    helpers = [(r, fp.get_folder_paths(HELPER_FOLDER)[0]) for names, r in _HELPERS if find_helper(names) is None]
    return str(download_missing([(remote, fp.get_folder_paths("gpen")[0])], also_missing=helpers,
                                also_why="also needed by GPEN Restore Faces")[0])


_HELPERS = ((files.DETECTOR_NAMES, files.DETECTOR), (files.PARSER_NAMES, files.PARSER))


def find_helper(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` found in models/facedetection (and its extra_model_paths.yaml folders)."""
    fp = comfy_bridge.folder_paths()
    for name in names:
        path = fp.get_full_path(HELPER_FOLDER, name)
        if path is not None:
            return path
    return None


def resolve_helper(names: tuple[str, ...], remote: RemoteFile) -> str:
    """The first of ``names`` found in models/facedetection, else the official file downloaded there."""
    return resolve_helpers([(names, remote)])[0]


def resolve_helpers(helpers: list[tuple[tuple[str, ...], RemoteFile]]) -> list[str]:
    """Paths of the helper networks; the missing ones are downloaded together (one error lists them all)."""
    found = [find_helper(names) for names, _ in helpers]
    folder = comfy_bridge.folder_paths().get_folder_paths(HELPER_FOLDER)[0]
    missing = [(remote, folder) for (_, remote), path in zip(helpers, found, strict=True) if path is None]
    fetched = iter(download_missing(missing))
    return [path if path is not None else str(next(fetched)) for path in found]


# -- face helper networks (shared by every GPEN Restore Faces node) -----------------------------------

@dataclass
class FaceHelpers:
    detector: ManagedModel
    parser: ManagedModel


_helpers_cache: dict[tuple, FaceHelpers] = {}


def face_helpers() -> FaceHelpers:
    """RetinaFace + ParseNet, loaded once per set of files (and re-loaded if a file changes)."""
    from ..restoration.gpen.detection import load_detector_file
    from ..restoration.gpen.parsing import load_parser_file

    det_path, par_path = resolve_helpers(list(_HELPERS))
    key = tuple((p, os.stat(p).st_mtime_ns) for p in (det_path, par_path))
    helpers = _helpers_cache.get(key)
    if helpers is None:
        _helpers_cache.clear()
        helpers = FaceHelpers(ManagedModel(load_detector_file(det_path)), ManagedModel(load_parser_file(par_path)))
        _helpers_cache[key] = helpers
    return helpers


# -- running ------------------------------------------------------------------------------------------

def _load_and_plan(model: GPENModel, patchers: list, faces_hint: int, with_parser: bool) -> tuple[int, torch.device]:
    """Load the networks and choose the faces per chunk (restoration.gpen.memory); returns (chunk, device).

    Where the core keeps inactive models resident (DynamicVRAM), free memory read before loading
    ignores what it would evict, so the core is first asked for room for the largest useful chunk
    (``load_models_gpu(memory_required=…)``) and the chunk is planned from what is free after that.
    Elsewhere the plan comes from free memory less the generator, and the load reserves that chunk.
    """
    mm = comfy_bridge.model_management()
    device = mm.get_torch_device()
    if has_dynamic_vram(mm):
        largest = faces_per_chunk(model.size, 1 << 62, device.type, faces_hint, with_parser)
        mm.load_models_gpu(patchers, memory_required=working_memory(model.size, largest, with_parser),
                           force_full_load=True)
        chunk = faces_per_chunk(model.size, mm.get_free_memory(device), device.type, faces_hint, with_parser)
        return chunk, mm.get_torch_device()
    free = mm.get_free_memory(device) - model.managed.size_bytes()
    chunk = faces_per_chunk(model.size, free, device.type, faces_hint, with_parser)
    mm.load_models_gpu(patchers, memory_required=working_memory(model.size, chunk, with_parser), force_full_load=True)
    return chunk, mm.get_torch_device()


def _chunking(total_hint: int):
    from ..restoration.gpen.pipeline import Chunking

    bar = comfy_bridge.comfy_utils().ProgressBar(max(total_hint, 1))
    mm = comfy_bridge.model_management()

    def on_oom(new_size: int) -> None:
        log.warning("GPEN: out of memory, retrying with %d face(s) per chunk", new_size)
        mm.soft_empty_cache()

    return Chunking(
        before_chunk=comfy_bridge.throw_if_interrupted,
        on_progress=lambda done, total: bar.update_absolute(done, total),
        on_oom=on_oom,
    )


# -- nodes --------------------------------------------------------------------------------------------

class GPENModelLoader:
    DESCRIPTION = (
        "Loads a GPEN face-restoration generator (GPEN-BFR-256/512/1024/2048) from models/gpen or "
        "models/facerestore_models. The two official files are downloaded on first use. The weights are "
        "for academic and non-commercial use only."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI API
        names = list_generator_files()
        default = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
        return {"required": {"model_name": (names, {
            "default": default,
            "tooltip": "GPEN generator file; the size (256–2048) and configuration are read from the file. "
                       "Official names not on disk are downloaded when first used.",
        })}}

    RETURN_TYPES = ("GPEN_MODEL",)
    RETURN_NAMES = ("gpen_model",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, model_name: str):
        path = resolve_generator(model_name)
        generator = load_generator(read_state_dict(path), model_name)
        log.info("GPEN: loaded %s as %s", model_name, generator.config.describe())
        return (GPENModel(model_name, generator.config, ManagedModel(generator)),)


class GPENRestoreFaces:
    DESCRIPTION = (
        "Finds faces (RetinaFace), aligns each to GPEN's template, restores it, and blends it back with a "
        "soft face-parsing mask. Images without a face pass through unchanged. Also outputs the mask of "
        "restored regions (e.g. for DDColor's face_mask)."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI API
        return {
            "required": {
                "image": ("IMAGE",),
                "gpen_model": ("GPEN_MODEL",),
                "detection_threshold": ("FLOAT", {
                    "default": 0.9, "min": 0.05, "max": 1.0, "step": 0.01,
                    "tooltip": "Minimum RetinaFace confidence for a face (GPEN uses 0.9). Lower finds more, "
                               "including false faces.",
                }),
                "only_largest_face": ("BOOLEAN", {
                    "default": False, "tooltip": "Restore only the largest face of each image.",
                }),
                "alpha": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Fidelity blend: 1 = restored face, lower keeps more of the original face.",
                }),
                "restore_small_faces": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Faces smaller than small_face_size: restore them (lightly smoothed, as GPEN "
                               "does) or leave them untouched.",
                }),
                "small_face_size": ("INT", {
                    "default": 100, "min": 0, "max": 8192, "step": 1,
                    "tooltip": "Short side (px) of the detected face box below which a face counts as small.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "face_mask")
    FUNCTION = "restore"
    CATEGORY = CATEGORY

    def restore(self, image: torch.Tensor, gpen_model: GPENModel, detection_threshold: float,
                only_largest_face: bool, alpha: float, restore_small_faces: bool, small_face_size: int,
                unique_id: str | None = None):
        from ..restoration.gpen.detection import FaceDetector
        from ..restoration.gpen.parsing import FaceParser
        from ..restoration.gpen.pipeline import FaceOptions, GeneratorRestorer, restore_faces

        options = FaceOptions(detection_threshold=detection_threshold, only_largest_face=only_largest_face,
                              alpha=alpha, restore_small_faces=restore_small_faces, small_face_size=small_face_size)
        helpers = face_helpers()
        patchers = [helpers.detector.patcher, helpers.parser.patcher, gpen_model.managed.patcher]
        chunk, device = _load_and_plan(gpen_model, patchers, faces_hint=image.shape[0] * 2, with_parser=True)
        chunking = _chunking(image.shape[0])
        chunking.chunk_size = chunk
        try:
            result = restore_faces(
                image, detect=FaceDetector(helpers.detector.module),
                restore=GeneratorRestorer(gpen_model.managed.module), parse=FaceParser(helpers.parser.module),
                face_size=gpen_model.size, options=options, chunking=chunking, device=device,
            )
        except Exception as e:
            if is_out_of_memory(e):
                raise RuntimeError(f"GPEN ran out of memory even one face at a time at {gpen_model.size}px: "
                                   "use a smaller GPEN model or free the GPU") from e
            raise
        out_device = comfy_bridge.model_management().intermediate_device()
        notes = result.notes(detection_threshold)
        for note in notes:
            log.info("GPEN Restore Faces: %s", note)
        summary = f"{sum(result.faces_restored)} face(s) restored"
        if notes:
            summary += "; " + "; ".join(notes)
        comfy_bridge.show_node_text(summary, unique_id)
        return {"ui": {"text": [summary]},
                "result": (result.images.to(out_device), result.masks.to(out_device))}


class GPENRestoreAlignedFace:
    DESCRIPTION = (
        "Restores images that already are aligned face crops (e.g. from a face-swap or crop node): each is "
        "resized to the model size (squashed if not square), restored and returned at the model size "
        "or, with keep_input_size, resized back. Gray (1 channel) stays gray, alpha is kept."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI API
        return {
            "required": {
                "image": ("IMAGE",),
                "gpen_model": ("GPEN_MODEL",),
                "keep_input_size": ("BOOLEAN", {
                    "default": False, "tooltip": "Resize the restored faces back to the input size instead of "
                                                 "returning them at the model size.",
                }),
            },
            "optional": {
                "resize_filter": (list(RESIZE_FILTERS), {
                    "default": RESIZE_FILTERS[0],
                    "tooltip": "bilinear (official): the official GPEN resize, results match it. antialiased: "
                               "filters when shrinking a larger crop: less moire and jagged hair, but softer "
                               "and no longer the official result.",
                }),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "restore"
    CATEGORY = CATEGORY

    def restore(self, image: torch.Tensor, gpen_model: GPENModel, keep_input_size: bool,
                resize_filter: str = RESIZE_FILTERS[0]):
        from ..restoration.gpen.aligned import restore_aligned
        from ..restoration.gpen.pipeline import GeneratorRestorer

        if resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter must be one of {', '.join(RESIZE_FILTERS)}, got {resize_filter!r}")
        chunk, device = _load_and_plan(gpen_model, [gpen_model.managed.patcher], faces_hint=image.shape[0],
                                       with_parser=False)
        chunking = _chunking(image.shape[0])
        chunking.chunk_size = chunk
        out = restore_aligned(image, GeneratorRestorer(gpen_model.managed.module), gpen_model.size,
                              chunking=chunking, device=device, antialias=resize_filter == "antialiased",
                              keep_input_size=keep_input_size)
        return (out.to(comfy_bridge.model_management().intermediate_device()),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "GPENModelLoader": GPENModelLoader,
    "GPENRestoreFaces": GPENRestoreFaces,
    "GPENRestoreAlignedFace": GPENRestoreAlignedFace,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "GPENModelLoader": "GPEN Model Loader",
    "GPENRestoreFaces": "GPEN Restore Faces",
    "GPENRestoreAlignedFace": "GPEN Restore Aligned Face",
}
