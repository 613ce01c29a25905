"""Restoration Governor: DDColor / GPEN restoration nodes and a queue governor for ComfyUI.

ComfyUI imports this folder as a custom-node pack. Outside a running ComfyUI server (unit tests,
tools) importing it must stay side-effect free, so the governor hooks are installed only when a
``PromptServer`` instance exists, and nothing here imports a ComfyUI module by itself.
"""

from __future__ import annotations

import logging
import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_log = logging.getLogger("restoration_governor")


def _running_prompt_server():
    """The live ``server.PromptServer.instance``, found without importing ComfyUI."""
    server_module = sys.modules.get("server")
    prompt_server_cls = getattr(server_module, "PromptServer", None)
    return getattr(prompt_server_cls, "instance", None)


def _register_model_folders() -> None:
    folder_paths = sys.modules.get("folder_paths")  # already imported by ComfyUI when it loads us
    if folder_paths is None:
        return
    from .restoration.model_folders import register_with_comfyui

    register_with_comfyui(folder_paths)


def _install_governor() -> None:
    prompt_server = _running_prompt_server()
    if prompt_server is None:
        return
    from .governor.comfy_adapter import install

    try:
        install(prompt_server)
    except Exception:  # never take ComfyUI down with us: the nodes still load
        _log.exception("restoration-governor: the queue governor could not be installed")


_register_model_folders()
_install_governor()
