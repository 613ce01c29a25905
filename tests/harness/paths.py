"""Where the checkout, the dev environment and the vendored ComfyUI live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_NODES_DIR = REPO_ROOT / "tests" / "fixture_nodes"
COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR", REPO_ROOT / ".venv" / "comfyui"))
ARTIFACTS_DIR = Path(os.environ.get("RG_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))
PACK_FOLDER_NAME = "restoration-governor"
