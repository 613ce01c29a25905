"""Small nodes that make queue behaviour testable on a CPU-only ComfyUI.

Loaded by the test harness through ``--extra-model-paths-config`` (``custom_nodes:``), never
installed for users. Every node re-runs on every prompt (``IS_CHANGED`` returns a fresh value) so
ComfyUI's output cache never turns a test job into a zero-second no-op. (Not NaN: ComfyUI 0.3.75
copies the value into ``/queue`` and ``/history``, and NaN is not valid JSON for a browser.)
"""

from __future__ import annotations

import os
import threading
import time

import comfy.model_management
import comfy.utils
import torch

_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


class _AlwaysRun:
    CATEGORY = "rg_tests"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def IS_CHANGED(cls, **_kwargs):  # noqa: N802 - ComfyUI's name
        return time.time_ns()


def _done(text: str):
    return {"ui": {"text": [text]}, "result": (text,)}


class RGTestSleep(_AlwaysRun):
    """Sleeps in ``steps`` slices, updating a ProgressBar, so interrupts land between slices."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {
            "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
        }, "optional": {
            "tag": ("STRING", {"default": ""}),
            "steps": ("INT", {"default": 10, "min": 1, "max": 100000}),
        }}

    def run(self, seconds, tag="", steps=10):
        pbar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(seconds / steps)
            pbar.update(1)  # the global progress hook raises if the prompt was interrupted
        return _done(f"slept {seconds}s {tag}")


class RGTestIgnoreInterrupt(_AlwaysRun):
    """One uninterruptible block: models a node stuck in a long kernel."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"seconds": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 3600.0})}}

    def run(self, seconds):
        time.sleep(seconds)
        return _done(f"blocked {seconds}s")


class RGTestFailNTimes(_AlwaysRun):
    """Fails the first ``failures`` runs with a given ``key``, then succeeds.

    ``error`` picks what is raised: ``oom`` (``torch.cuda.OutOfMemoryError``, ComfyUI's
    ``OOM_EXCEPTION``), ``runtime`` (RuntimeError), ``value`` (ValueError) or ``connection``
    (ConnectionError, a typical transient failure).
    """

    ERRORS = {
        "oom": lambda m: torch.cuda.OutOfMemoryError(f"CUDA out of memory. {m}"),
        "runtime": RuntimeError,
        "value": ValueError,
        "connection": ConnectionError,
    }

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {
            "key": ("STRING", {"default": "k"}),
            "failures": ("INT", {"default": 1, "min": 0, "max": 1000000}),
            "error": (list(cls.ERRORS), {"default": "oom"}),
        }, "optional": {
            "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0}),
        }}

    def run(self, key, failures, error, seconds=0.0):
        with _attempts_lock:
            _attempts[key] = attempt = _attempts.get(key, 0) + 1
        if seconds:
            time.sleep(seconds)
        if attempt <= failures:
            raise self.ERRORS[error](f"rg_test failure {attempt}/{failures} for key {key!r}")
        return _done(f"succeeded on attempt {attempt}")


class RGTestAllocate(_AlwaysRun):
    """Holds ``megabytes`` of memory on ComfyUI's torch device for ``seconds``."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {
            "megabytes": ("INT", {"default": 64, "min": 1, "max": 1 << 20}),
            "seconds": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 3600.0}),
        }}

    def run(self, megabytes, seconds):
        device = comfy.model_management.get_torch_device()
        block = torch.ones(megabytes * (1 << 20), dtype=torch.uint8, device=device)  # touched, so resident
        steps = max(1, int(seconds / 0.05))
        pbar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(seconds / steps)
            pbar.update(1)
        total = int(block.sum().item() // (1 << 20))
        del block
        return _done(f"held {total} MB")


class RGTestRecord(_AlwaysRun):
    """Appends ``start <tag> <pid>`` to ``path``, sleeps ``seconds`` in slices, then appends
    ``done <tag> <pid>``: a log of every execution, for exactly-once counts across servers."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {
            "path": ("STRING", {"default": ""}),
            "tag": ("STRING", {"default": ""}),
            "seconds": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 3600.0, "step": 0.01}),
        }}

    def run(self, path, tag, seconds):
        _append(path, f"start {tag} {os.getpid()}")
        steps = max(1, int(seconds / 0.1))
        pbar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(seconds / steps)
            pbar.update(1)
        _append(path, f"done {tag} {os.getpid()}")
        return _done(f"recorded {tag}")


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # one write(2) per line: atomic append
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


NODE_CLASS_MAPPINGS = {
    "RGTestRecord": RGTestRecord,
    "RGTestSleep": RGTestSleep,
    "RGTestIgnoreInterrupt": RGTestIgnoreInterrupt,
    "RGTestFailNTimes": RGTestFailNTimes,
    "RGTestAllocate": RGTestAllocate,
}
