"""The API-format workflows the batch runs: the shipped templates (``api_workflows/``) or a user's file.

Each photo's prompt is the workflow with its one image input pointed at the uploaded file, the
model loaders set to the requested checkpoints, and the save nodes writing under a per-photo
prefix (so a result stays findable even when the server forgot its history in a restart).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "api_workflows"

MODES: dict[str, str] = {
    "person": "DDColor Person Restore",
    "building": "DDColor Building Restore",
    "old-photo": "Old Photo Restore (GPEN + DDColor)",
    "faces": "GPEN Portrait Enhance",
}
# Core's loader and the pack's 16-bit-preserving one take the same ``image`` input.
IMAGE_LOADERS = frozenset({"LoadImage", "RestorationLoadImage"})
MODEL_LOADERS = {"ddcolor": "DDColorModelLoader", "gpen": "GPENModelLoader"}
SAVE_NODES = frozenset({"SaveImage"})
OUTPUT_SUBFOLDER = "restore-batch"


class WorkflowError(ValueError):
    """The workflow cannot be used for a batch; the message says why and what to do."""


@dataclass(frozen=True)
class Workflow:
    """An API-format prompt with exactly one image input.

    ``name`` is the mode or the file's name; ``image_node`` the id of the loader whose ``image``
    input receives each photo; ``fingerprint`` a SHA-256 of the prompt with its models set.
    """

    name: str
    prompt: dict[str, Any]
    image_node: str
    fingerprint: str

    def for_photo(self, uploaded_name: str, key: str) -> dict[str, Any]:
        """The prompt for one photo: ``uploaded_name`` as the loader's image, saves under ``key``."""
        prompt = copy.deepcopy(self.prompt)
        prompt[self.image_node]["inputs"]["image"] = uploaded_name
        for node in prompt.values():
            if node.get("class_type") in SAVE_NODES and "filename_prefix" in node.get("inputs", {}):
                node["inputs"]["filename_prefix"] = f"{OUTPUT_SUBFOLDER}/{key[:24]}"
        return prompt


def template_path(mode: str) -> Path:
    return API_WORKFLOWS_DIR / f"{MODES[mode]}.json"


def find_image_input(prompt: Mapping[str, Any]) -> str:
    """The id of the one ``LoadImage``/``RestorationLoadImage`` node; WorkflowError otherwise."""
    found = [node_id for node_id, node in prompt.items()
             if isinstance(node, dict) and node.get("class_type") in IMAGE_LOADERS
             and isinstance(node.get("inputs", {}).get("image"), str)]
    if len(found) != 1:
        raise WorkflowError(f"the workflow needs exactly one image input ({' or '.join(sorted(IMAGE_LOADERS))} "
                            f"with a file name); it has {len(found)}")
    return found[0]


def load_workflow(mode_or_path: str, *, ddcolor_model: str | None = None,
                  gpen_model: str | None = None) -> Workflow:
    """A mode name (``person``, ``building``, ``old-photo``, ``faces``) or a path to an API workflow.

    Raises WorkflowError for an unknown mode, an unreadable or graph-editor (non-API) file, a
    workflow without exactly one image input, or a model option the workflow has no loader for.
    """
    if mode_or_path in MODES:
        path, name = template_path(mode_or_path), mode_or_path
    else:
        path, name = Path(mode_or_path), Path(mode_or_path).name
        if not path.is_file():
            raise WorkflowError(f"{mode_or_path!r} is neither a mode ({', '.join(MODES)}) nor a workflow file")
    try:
        prompt = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WorkflowError(f"cannot read the workflow {path}: {e}") from None
    if not isinstance(prompt, dict) or "nodes" in prompt or not all(
            isinstance(n, dict) and "class_type" in n for n in prompt.values()):
        raise WorkflowError(f"{path} is not an API-format workflow: in ComfyUI use Workflow > Export (API)")
    prompt = {str(k): v for k, v in prompt.items()}
    image_node = find_image_input(prompt)
    for family, model in (("ddcolor", ddcolor_model), ("gpen", gpen_model)):
        if model is None:
            continue
        loaders = [n for n in prompt.values() if n["class_type"] == MODEL_LOADERS[family]]
        if not loaders:
            raise WorkflowError(f"--{family}-model: the workflow {name!r} has no {MODEL_LOADERS[family]}")
        for node in loaders:
            node["inputs"]["model_name"] = model
    blob = json.dumps(prompt, sort_keys=True, separators=(",", ":"))
    return Workflow(name, prompt, image_node, hashlib.sha256(blob.encode()).hexdigest())


def idempotency_key(content_sha256: str, workflow: Workflow, options: Mapping[str, Any]) -> str:
    """``rg-<64 hex>``: the photo's content + the workflow (mode and models) + ``options`` (the client id).

    The same photo run the same way gets the same key on every run and machine, so a re-run is
    answered with the first run's prompt instead of a second prompt.
    """
    blob = json.dumps({"photo": content_sha256, "workflow": workflow.fingerprint, "options": dict(options)},
                      sort_keys=True, separators=(",", ":"))
    return "rg-" + hashlib.sha256(blob.encode()).hexdigest()
