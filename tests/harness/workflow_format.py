"""Turn a graph-editor workflow (what the frontend saves and the template browser loads) into the
API-format prompt ``/prompt`` accepts, the way the frontend does when it queues a workflow.

Usage::

    api = ui_to_api(json.loads(ui_path.read_text()), object_info)   # object_info: GET /object_info

A pack ships both formats of a template (``example_workflows/<Name>.json`` and
``api_workflows/<Name>.json``); a test converts the first and compares it with the second, so the
two cannot drift apart.

What it covers (frontend 1.32 serialisation):

* widget values are matched to inputs in ``input_order`` (required, then optional);
* the extra widgets the frontend adds are skipped: ``control_after_generate`` after a seed-like
  INT, and the upload button of ``image_upload`` / ``video_upload`` / ``audio_upload`` combos;
* a widget converted to a socket and linked takes the link instead of its value;
* frontend-only nodes (notes, reroutes, primitives) are left out; muted nodes (mode 2) are left
  out; bypassed nodes (mode 4) are refused with an error (wire around them instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload")
SEED_NAMES = frozenset({"seed", "noise_seed"})
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowFormatError(ValueError):
    """The workflow cannot be converted; the message names the node."""


def ui_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """API-format prompt ``{node_id: {"class_type", "inputs", "_meta": {"title"}}}`` for ``workflow``."""
    links = {link[0]: link for link in workflow.get("links", [])}
    skipped = {node["id"] for node in workflow["nodes"]
               if node["type"] in FRONTEND_ONLY_TYPES or node.get("mode", 0) == MODE_MUTED}
    prompt: dict[str, dict[str, Any]] = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["id"] in skipped:
            continue
        if node.get("mode", 0) == MODE_BYPASS:
            raise WorkflowFormatError(f"node {node['id']} ({node['type']}) is bypassed; bypass is not converted")
        info = object_info.get(node["type"])
        if info is None:
            raise WorkflowFormatError(f"node {node['id']}: type {node['type']!r} is not known to this server")
        prompt[str(node["id"])] = {
            "class_type": node["type"],
            "inputs": _inputs(node, info, links, skipped),
            "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]},
        }
    return prompt


def _inputs(node: Mapping[str, Any], info: Mapping[str, Any], links: Mapping[int, list],
            skipped: set[int]) -> dict[str, Any]:
    linked = {}
    for slot in node.get("inputs", []):
        link_id = slot.get("link")
        if link_id is None:
            continue
        _, origin, origin_slot, *_ = links[link_id]
        if origin not in skipped:
            linked[slot["name"]] = [str(origin), origin_slot]
    values = node.get("widgets_values", [])
    named_values = values if isinstance(values, Mapping) else None
    position = 0
    inputs: dict[str, Any] = {}
    for name, spec in _declared_inputs(info):
        kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {})
        is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
        if is_widget:
            if named_values is not None:
                value = named_values.get(name)
            else:
                if position >= len(values):
                    raise WorkflowFormatError(f"node {node['id']} ({node['type']}): no widget value for {name!r}")
                value = values[position]
                position += 1 + _extra_widgets(name, kind, options)
            inputs[name] = value
        if name in linked:
            inputs[name] = linked[name]
    return inputs


def _declared_inputs(info: Mapping[str, Any]):
    declared = info.get("input", {})
    order = info.get("input_order") or {section: list(declared.get(section, {})) for section in ("required",
                                                                                                  "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            yield name, declared[section][name]


def _extra_widgets(name: str, kind: Any, options: Mapping[str, Any]) -> int:
    """How many frontend-only widget values follow this input's value in ``widgets_values``."""
    extra = 0
    if kind == "INT" and options.get("control_after_generate", name in SEED_NAMES):
        extra += 1
    if any(options.get(flag) for flag in UPLOAD_OPTIONS):
        extra += 1
    return extra


def template_names() -> list[str]:
    """Every template the pack ships (``example_workflows/<Name>.json``)."""
    from .paths import REPO_ROOT

    return sorted(p.stem for p in (REPO_ROOT / "example_workflows").glob("*.json"))


def load_template(name: str) -> dict[str, Any]:
    """The graph-editor template ``example_workflows/<name>.json``."""
    import json

    from .paths import REPO_ROOT

    return json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text())


def load_api_twin(name: str) -> dict[str, Any]:
    """The API-format twin ``api_workflows/<name>.json``."""
    import json

    from .paths import REPO_ROOT

    return json.loads((REPO_ROOT / "api_workflows" / f"{name}.json").read_text())
