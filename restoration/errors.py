"""Short type names for the pack's exceptions, as ComfyUI shows them.

ComfyUI reports a node's exception as ``exception_type = f"{cls.__module__}.{cls.__qualname__}"``
(``execution.full_type_name``) unless the module is ``builtins``. A pack loaded by path gets its
folder path as module name, so users saw ``/…/custom_nodes/restoration-governor.restoration.download.
DownloadError`` in the toast, the queue panel and ``/history``, and the useful sentence was cut off.
Classes marked here present just their name (``DownloadError``) there and in Python tracebacks.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=type[BaseException])


def short_type_name(cls: E) -> E:
    """Class decorator: ComfyUI and tracebacks show ``cls.__qualname__`` alone.

    The class stays importable from its real module; only its reported module changes (so it
    cannot be pickled by reference, which nothing in ComfyUI does with node exceptions).
    """
    cls.__module__ = "builtins"
    return cls
