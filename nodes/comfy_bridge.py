"""Lazy access to ComfyUI modules for the node classes.

The pack must import without ComfyUI (unit tests, tools), and ComfyUI's own top-level module is
called ``nodes`` (the same name as this package), so node code never imports ComfyUI at module
level: it calls these helpers at run time instead.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType


def folder_paths() -> ModuleType:
    return importlib.import_module("folder_paths")


def model_management() -> ModuleType:
    return importlib.import_module("comfy.model_management")


def comfy_utils() -> ModuleType:
    return importlib.import_module("comfy.utils")


def model_patcher() -> ModuleType:
    return importlib.import_module("comfy.model_patcher")


def prompt_server():
    """``server.PromptServer.instance`` or ``None`` outside a running server."""
    try:
        server = importlib.import_module("server")
    except ImportError:
        return None
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user (or the governor) interrupted the prompt."""
    try:
        mm = model_management()
    except ImportError:  # plain-torch use outside ComfyUI: nothing can interrupt us
        return
    mm.throw_exception_if_processing_interrupted()


def show_node_text(text: str, node_id: str | None) -> None:
    """Show ``text`` under the running node (ComfyUI's progress text) when a server is running.

    A UI nicety: it never fails the node.
    """
    server = prompt_server()
    if server is None or node_id is None or not hasattr(server, "send_progress_text"):
        return
    try:
        server.send_progress_text(text, node_id)
    except Exception:
        logging.getLogger("restoration_governor").debug("could not send progress text", exc_info=True)
