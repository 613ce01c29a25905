"""The model folders the pack's nodes read, relative to ComfyUI's ``models`` directory.

Shared by the nodes (which register them with ``folder_paths`` so extra_model_paths.yaml entries
are honoured) and by ``install.py`` (which creates them).
"""

from __future__ import annotations

MODEL_FOLDERS: dict[str, str] = {
    "ddcolor": "DDColor colorization checkpoints (.pth / .safetensors)",
    "gpen": "GPEN face-restoration generators (GPEN-BFR-*.pth)",
    "facerestore_models": "face restoration models shared with ReActor and other packs (GPEN files are read here too)",
    "facedetection": "RetinaFace detector and ParseNet parser weights (facexlib names)",
}

MODEL_EXTENSIONS = frozenset({".pth", ".pt", ".safetensors", ".bin", ".ckpt"})


def register_with_comfyui(folder_paths) -> None:
    """Register each folder with ComfyUI's ``folder_paths`` module (passed in, never imported here).

    extra_model_paths.yaml is applied before custom nodes load and may already have created a key;
    then the default folder is appended and the extension filter widened, never replaced.
    """
    import os

    for name in MODEL_FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        entry = folder_paths.folder_names_and_paths.get(name)
        if entry is None:
            folder_paths.folder_names_and_paths[name] = ([default], set(MODEL_EXTENSIONS))
            continue
        paths, extensions = entry
        if default not in paths:
            paths.append(default)
        if extensions:  # an empty set means "every file" in folder_paths: keep that
            extensions.update(MODEL_EXTENSIONS)
