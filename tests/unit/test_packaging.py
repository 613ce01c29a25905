"""The pack as ComfyUI, ComfyUI-Manager and the Comfy Registry see it, checked without ComfyUI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
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
    names = {_name(r) for r in requirements}
    declared = {_name(r) for r in _pyproject()["project"]["dependencies"]} - {FRONTEND}
    assert names == declared, "requirements.txt and pyproject dependencies must list the same packages"
    assert FRONTEND not in names, "pip must never install a frontend over ComfyUI's own"


FRONTEND = "comfyui-frontend-package"
ACCELERATORS = {"Environment :: GPU :: NVIDIA CUDA", "Environment :: GPU :: AMD ROCm", "Environment :: GPU :: Intel Arc",
                "Environment :: GPU :: Apple Metal", "Environment :: NPU :: Huawei Ascend"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement)[0].lower()


def test_the_frontend_range_covers_both_tested_frontends():
    from packaging.requirements import Requirement

    entries = [Requirement(r) for r in _pyproject()["project"]["dependencies"] if _name(r) == FRONTEND]
    assert len(entries) == 1
    spec = entries[0].specifier
    assert spec.contains("1.32.9") and spec.contains("1.58.1")
    assert not spec.contains("1.27.10"), "frontends older than ComfyUI 0.3.75's own are not tested"


def test_accelerator_classifiers_hide_the_pack_from_nobody():
    classifiers = set(_pyproject()["project"]["classifiers"])
    assert "Operating System :: OS Independent" in classifiers
    listed = {c for c in classifiers if c.startswith(("Environment :: GPU", "Environment :: NPU"))}
    assert listed == ACCELERATORS, "a partial accelerator list hides the pack from the others (and CPU users)"


def test_registry_models_are_the_official_weight_files():
    from restoration_governor.restoration.ddcolor.files import OFFICIAL_CHECKPOINTS, official_remote
    from restoration_governor.restoration.gpen import files

    official = {f"/ddcolor/{name}": official_remote(name).url for name in OFFICIAL_CHECKPOINTS}
    official |= {f"/gpen/{name}": remote.url for name, remote in files.OFFICIAL_GENERATORS.items()}
    official |= {f"/facedetection/{r.filename}": r.url for r in (files.DETECTOR, files.PARSER)}
    models = _pyproject()["tool"]["comfy"]["Models"]
    assert {m["location"]: m["model_url"] for m in models} == official
    assert len(models) == len(official) == 8


def test_the_published_archive_leaves_out_tests_bench_and_ci():
    def ignored(path: str) -> bool:
        out = subprocess.run(["git", "-c", f"core.excludesFile={REPO_ROOT / '.comfyignore'}", "check-ignore",
                              "--no-index", "-q", path], cwd=REPO_ROOT, timeout=30)
        assert out.returncode in (0, 1), out
        return out.returncode == 0

    for path in ("tests/unit/test_packaging.py", "tests/harness/comfy_server.py", "bench/gpen.py", ".ci/run",
                 "scripts/devenv.sh", "requirements-dev.txt"):
        assert ignored(path), f"{path} must not be published"
    for path in ("__init__.py", "nodes/gpen.py", "governor/core.py", "restoration/download.py", "web/governor.js",
                 "example_workflows/GPEN Portrait Enhance.json", "locales/en/main.json", "requirements.txt",
                 "install.py", "pyproject.toml", "LICENSE", "README.md", "docs/governor.md"):
        assert not ignored(path), f"{path} must be published"


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


def _run_install(tmp_path, *args, **env):
    # The audit hook records every attempt to start a process: install.py may start none.
    code = """
import json, runpy, sys
started = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn"):
        started.append(event)
sys.addaudithook(hook)
sys.argv = ["install.py"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print("STARTED=" + json.dumps(started))
"""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path / "pack", capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", **env})
    assert out.returncode == 0, out.stderr
    started = json.loads(out.stdout.rsplit("STARTED=", 1)[1])
    assert started == [], "install.py must not start a process (no pip: the Registry forbids it)"
    return out.stdout


@pytest.fixture
def pack_copy(tmp_path):
    """install.py with the pack's model-folder table and a requirements.txt that names a missing package."""
    pack = tmp_path / "pack"
    (pack / "restoration").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "install.py", pack)
    shutil.copy(REPO_ROOT / "restoration" / "model_folders.py", pack / "restoration")
    (pack / "restoration" / "__init__.py").write_text("")
    (pack / "requirements.txt").write_text("numpy>=1.0\nrg-not-installed-anywhere>=1.0\npillow>=999\n")
    return pack


def test_install_script_starts_no_process_and_prints_what_is_missing(tmp_path, pack_copy):
    stdout = _run_install(tmp_path, COMFYUI_PATH=str(tmp_path / "comfy"))
    assert "missing requirements: rg-not-installed-anywhere>=1.0, pillow>=999 (found " in stdout
    assert f"-m pip install -r {pack_copy / 'requirements.txt'}" in stdout
    assert "numpy" not in stdout.split("missing requirements:")[1]


def test_install_script_is_idempotent_and_creates_the_model_folders(tmp_path, pack_copy):
    (pack_copy / "requirements.txt").write_text("numpy>=1.0\n")
    env = {"COMFYUI_PATH": str(tmp_path / "comfy")}
    first = _run_install(tmp_path, **env)
    from restoration_governor.restoration.model_folders import MODEL_FOLDERS

    for name in MODEL_FOLDERS:
        assert (tmp_path / "comfy" / "models" / name).is_dir()
        assert f"created {tmp_path / 'comfy' / 'models' / name}" in first
    assert "nothing to do" in _run_install(tmp_path, **env)
