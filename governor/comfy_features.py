"""What the running ComfyUI core offers, feature-detected (the adapter's side; ComfyUI imported lazily).

* :func:`core_job_id_rule`: core 0.4x's ``comfy_execution.jobs.validate_job_id`` (the canonical-UUID
  rule for client-chosen prompt ids), or None on cores without it (0.3.x).
* :func:`dynamic_vram_evictable`: where the core keeps inactive models resident in VRAM until something
  needs the room (DynamicVRAM, comfy-aimdo), a function giving the bytes of this instance's loaded
  models on the device — the memory gate counts them as available (``memory.ProbeChain``); None on
  cores that unload models themselves (the gate then asks for an unload once per wait, as before).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from types import ModuleType

from .prompt_ids import CoreRule

log = logging.getLogger("restoration_governor.adapter")

# Markers of DynamicVRAM: the comfy-aimdo package, or a flag on comfy.model_management.
AIMDO_MODULES = ("comfy_aimdo",)
DYNAMIC_VRAM_FLAGS = ("dynamic_vram", "DYNAMIC_VRAM", "dynamic_vram_enabled")


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def core_job_id_rule() -> CoreRule | None:
    """``comfy_execution.jobs.validate_job_id`` when the core has it, else None."""
    jobs = _module("comfy_execution.jobs")
    rule = getattr(jobs, "validate_job_id", None) if jobs is not None else None
    return rule if callable(rule) else None


def _flag(mm: ModuleType) -> bool:
    for name in DYNAMIC_VRAM_FLAGS:
        value = getattr(mm, name, None)
        try:
            if callable(value):
                value = value()
        except Exception:  # a probe of someone else's API must never stop the start-up
            continue
        if value is True:
            return True
    return False


def has_dynamic_vram(mm: ModuleType) -> bool:
    """Whether the core keeps inactive models resident (comfy-aimdo installed, or the core's own flag)."""
    return any(importlib.util.find_spec(name) is not None for name in AIMDO_MODULES) or _flag(mm)


def loaded_model_bytes(mm: ModuleType, device) -> int:
    """Bytes of the models ComfyUI holds loaded on ``device`` (``current_loaded_models``).

    Read by the memory gate only while this instance runs nothing, so all of them are inactive and the
    next prompt's ``load_models_gpu`` may evict them.
    """
    total = 0
    for loaded in list(getattr(mm, "current_loaded_models", ())):
        try:
            if str(getattr(loaded, "device", device)) == str(device):
                total += int(loaded.model_loaded_memory())
        except Exception:  # a model being torn down by the worker meanwhile: skip it
            continue
    return total


def dynamic_vram_evictable(mm: ModuleType | None = None) -> Callable[[], int] | None:
    """The evictable-bytes function for the memory gate under DynamicVRAM, else None (older cores, CPU)."""
    mm = mm if mm is not None else _module("comfy.model_management")
    if mm is None or not has_dynamic_vram(mm):
        return None
    try:
        device = mm.get_torch_device()
    except Exception:
        return None
    if getattr(device, "type", None) != "cuda":
        return None
    log.info("DynamicVRAM detected: the memory gate counts this instance's resident models as available")
    return lambda: loaded_model_bytes(mm, device)
