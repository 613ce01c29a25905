"""ComfyUI node classes of the pack (V1 API, the most widely supported).

Each node module is thin: it parses inputs, calls plain-torch code under ``restoration/`` and
returns ComfyUI types. ComfyUI modules are imported lazily through :mod:`.comfy_bridge`, so this
package imports without ComfyUI.
"""

from __future__ import annotations

from . import ddcolor, gpen, image_files

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

for _module in (ddcolor, gpen, image_files):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
