"""Install-time set-up, run by ComfyUI-Manager / comfy-cli as ``python install.py`` (cwd = this pack).

It installs nothing and starts no process: the Comfy Registry forbids package installs from install
scripts, ComfyUI-Manager 4.3 refuses flagged packs on servers that listen beyond loopback, and uv
environments have no pip. The Manager installs ``requirements.txt`` itself. This script only creates
the model folders the nodes read and prints what is still missing (requirements, with the command to
install them). Weights are never downloaded here: the nodes fetch an official checkpoint on first use.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # very bare environments: fall back to "is it installed at all"
    Requirement = None

PACK_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(PACK_DIR))

from restoration.model_folders import MODEL_FOLDERS  # noqa: E402


def comfyui_models_dir() -> Path | None:
    """ComfyUI's models folder: from the Manager's environment, else from where the pack sits."""
    for variable in ("COMFYUI_FOLDERS_BASE_PATH", "COMFYUI_PATH"):
        base = os.environ.get(variable)
        if base:
            return Path(base) / "models"
    here = Path.cwd().absolute()  # not resolved: a symlinked pack still sits in custom_nodes/
    if here.parent.name == "custom_nodes":
        return here.parent.parent / "models"
    return None


def missing_requirements() -> list[str]:
    """Lines of requirements.txt that are not installed, or installed in a version outside the range."""
    missing = []
    for line in (PACK_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if Requirement is None:
            name, specifier = line.split(">=")[0].split("==")[0].strip(), None
        else:
            requirement = Requirement(line)
            name, specifier = requirement.name, requirement.specifier
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if specifier and not specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (found {installed})")
    return missing


def main() -> int:
    actions: list[str] = []
    models = comfyui_models_dir()
    if models is None:
        actions.append("model folders skipped: ComfyUI's folder not found from here (set COMFYUI_PATH)")
    else:
        for name in MODEL_FOLDERS:
            folder = models / name
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                actions.append(f"created {folder}")

    missing = missing_requirements()
    if missing:
        actions.append(
            f"missing requirements: {', '.join(missing)}. Install them with ComfyUI's Python: "
            f"{Path(sys.executable).name} -m pip install -r {PACK_DIR / 'requirements.txt'} "
            "(ComfyUI-Manager does this itself)"
        )

    print("[restoration-governor] install.py:", "; ".join(actions) if actions else "nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
