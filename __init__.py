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


def _install_example_photo() -> None:
    """Put the templates' grayscale example photo into ComfyUI's input folder (once; never overwritten)."""
    folder_paths = sys.modules.get("folder_paths")
    if folder_paths is None:
        return
    import shutil
    from pathlib import Path

    source = Path(__file__).resolve().parent / "example_workflows" / "restoration-example.png"
    try:
        target = Path(folder_paths.get_input_directory()) / source.name
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    except OSError:
        _log.warning("restoration-governor: could not copy %s into the input folder", source.name)


def _install_upload_page() -> None:
    prompt_server = _running_prompt_server()
    if prompt_server is None:
        return
    from .upload_page.routes import install

    try:
        install(prompt_server)
    except Exception:  # the nodes and the governor work without the page
        _log.exception("restoration-governor: the upload page at /restoration/ could not be installed")


_register_model_folders()
_install_governor()
_install_example_photo()
_install_upload_page()
