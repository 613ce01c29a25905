"""The pack as ComfyUI, ComfyUI-Manager and the Comfy Registry see it, checked without ComfyUI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import tomllib
from harness.paths import REPO_ROOT


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_pyproject_is_fit_for_the_comfy_registry():
    project = _pyproject()["project"]
    comfy = _pyproject()["tool"]["comfy"]
    assert project["name"] == "restoration-governor"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] == {"file": "LICENSE"}
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()
    assert project["urls"]["Repository"].startswith("https://")
    assert comfy["PublisherId"]
    assert comfy["DisplayName"] == "Restoration Governor — DDColor, GPEN and a queue governor"
    assert comfy["Icon"].startswith("https://")
    assert (REPO_ROOT / comfy["Icon"].split("/main/", 1)[1]).is_file(), "the icon the registry shows is in the repo"
    assert comfy["requires-comfyui"]
    assert "web" not in comfy, "WEB_DIRECTORY already serves web/; [tool.comfy].web would load the JS twice"


def test_version_is_single_sourced():
    from restoration_governor.governor import __version__

    assert __version__ == _pyproject()["project"]["version"]


def test_requirements_install_line_by_line_without_torch():
    lines = [raw.strip() for raw in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements
    for line in requirements:
        assert not line.startswith("-"), f"ComfyUI-Manager installs one requirement per line: {line}"
        assert " " not in line
        name = re.split(r"[<>=!~;\[]", line)[0].lower()
        assert name not in {"torch", "torchvision", "torchaudio"}, "ComfyUI owns torch"
    names = {re.split(r"[<>=!~;\[]", r)[0].lower() for r in requirements}
    declared = {re.split(r"[<>=!~;\[]", r)[0].lower() for r in _pyproject()["project"]["dependencies"]}
    assert names == declared, "requirements.txt and pyproject dependencies must list the same packages"


def test_importing_the_pack_outside_comfyui_imports_no_comfyui_module():
    # A fresh interpreter: import the checkout as a package and list what came with it.
    code = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("rg_pack", {str(REPO_ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(REPO_ROOT)!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["rg_pack"] = pack
spec.loader.exec_module(pack)
comfy = sorted(m for m in sys.modules if m.split(".")[0] in
               {{"server", "execution", "folder_paths", "comfy", "comfy_api", "comfy_execution", "nodes", "main"}})
print(json.dumps({{"comfy": comfy, "web": pack.WEB_DIRECTORY, "nodes": sorted(pack.NODE_CLASS_MAPPINGS)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["comfy"] == []
    assert result["web"] == "./web"
    assert result["nodes"], "the pack exports its nodes"


def test_install_script_is_idempotent_and_creates_the_model_folders(tmp_path):
    env = {"COMFYUI_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "install.py"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    from restoration_governor.restoration.model_folders import MODEL_FOLDERS

    for name in MODEL_FOLDERS:
        assert (tmp_path / "models" / name).is_dir()
        assert f"created {tmp_path / 'models' / name}" in first.stdout
    second = subprocess.run([sys.executable, "install.py"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
