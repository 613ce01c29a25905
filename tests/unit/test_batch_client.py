"""The parts of ``restore.py`` that need no server: workflows, keys, output names, 16-bit PNGs, journal."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness.paths import REPO_ROOT
from PIL import Image
from restoration_governor.batch.journal import Journal
from restoration_governor.batch.output import encode_png16, result_stems
from restoration_governor.batch.workflows import MODES, WorkflowError, idempotency_key, load_workflow


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_uses_its_shipped_api_template(mode):
    wf = load_workflow(mode)
    shipped = json.loads((REPO_ROOT / "api_workflows" / f"{MODES[mode]}.json").read_text())
    assert wf.prompt == shipped
    prompt = wf.for_photo("restore-batch/abc.png", "rg-" + "0" * 64)
    assert prompt[wf.image_node]["inputs"]["image"] == "restore-batch/abc.png"
    assert all(n["inputs"]["filename_prefix"] == "restore-batch/rg-" + "0" * 21
               for n in prompt.values() if n["class_type"] == "SaveImage")


@pytest.mark.parametrize("loader_class", ["RestorationLoadImage", "LoadImage"])
def test_either_loader_is_accepted_as_the_image_input_and_models_are_set(tmp_path, loader_class):
    api = json.loads((REPO_ROOT / "api_workflows" / f"{MODES['old-photo']}.json").read_text())
    loader = next(k for k, n in api.items() if n["class_type"] in ("RestorationLoadImage", "LoadImage"))
    api[loader]["class_type"] = loader_class
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(api))
    wf = load_workflow(str(path), ddcolor_model="ddcolor_paper_tiny.pth", gpen_model="GPEN-BFR-256.pth")
    assert wf.image_node == loader
    models = {n["class_type"]: n["inputs"]["model_name"] for n in wf.prompt.values() if "model_name" in n["inputs"]}
    assert models == {"DDColorModelLoader": "ddcolor_paper_tiny.pth", "GPENModelLoader": "GPEN-BFR-256.pth"}
    assert wf.fingerprint != load_workflow(str(path)).fingerprint


def test_unusable_workflows_are_refused_with_the_remedy(tmp_path):
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(WorkflowError, match="Export \\(API\\)"):
        load_workflow(str(ui))
    with pytest.raises(WorkflowError, match="neither a mode"):
        load_workflow("sepia")
    with pytest.raises(WorkflowError, match="has no GPENModelLoader"):
        load_workflow("person", gpen_model="GPEN-BFR-512.pth")
    two = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
           "2": {"class_type": "RestorationLoadImage", "inputs": {"image": "b.png"}}}
    (tmp_path / "two.json").write_text(json.dumps(two))
    with pytest.raises(WorkflowError, match="exactly one image input"):
        load_workflow(str(tmp_path / "two.json"))


def test_the_key_depends_on_content_mode_and_models_only():
    person, building = load_workflow("person"), load_workflow("building")
    key = idempotency_key("a" * 64, person, {})
    assert key == idempotency_key("a" * 64, load_workflow("person"), {})
    assert len({key, idempotency_key("b" * 64, person, {}), idempotency_key("a" * 64, building, {}),
                idempotency_key("a" * 64, load_workflow("person", ddcolor_model="x.pth"), {})}) == 4


def test_inputs_sharing_a_name_in_one_folder_get_distinct_results():
    stems = result_stems([Path("a/print.bmp"), Path("a/print.webp"), Path("b/print.jpg"), Path("a/x.png")])
    assert stems == {Path("a/print.bmp"): Path("a/print_bmp"), Path("a/print.webp"): Path("a/print_webp"),
                     Path("b/print.jpg"): Path("b/print"), Path("a/x.png"): Path("a/x")}


def test_results_in_an_output_folder_inside_the_input_are_never_taken_as_scans(tmp_path):
    from restoration_governor.batch.inputs import collect

    Image.new("L", (8, 8)).save(tmp_path / "scan.png")
    (tmp_path / "restored").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "restored" / "scan_restored.png")
    sources, _ = collect([tmp_path], exclude=tmp_path / "restored")  # --out inside the input folder
    assert [s.relative.as_posix() for s in sources] == ["scan.png"]


def test_the_input_folder_itself_is_refused_as_the_output_folder(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "scan.png")
    run = subprocess.run([sys.executable, str(REPO_ROOT / "restore.py"), str(tmp_path), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "is an input folder" in run.stderr


def test_png16_round_trips_through_pillow():
    rgb = (np.random.default_rng(0).random((5, 7, 3)) * 65535).astype(np.uint16)
    data = encode_png16(rgb)
    assert data[24] == 16
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (7, 5)
        img.load()


def test_a_torn_journal_line_is_ignored(tmp_path):
    j = Journal(tmp_path)
    j.write("rg-1", prompt_id="p1")
    j.write("rg-1", status="done", outputs=["x_restored.png"])
    j.close()
    with open(tmp_path / ".restore-journal.jsonl", "a") as f:
        f.write('{"key": "rg-2", "prompt_')  # killed mid-write
    again = Journal(tmp_path)
    assert again.get("rg-1") == {"key": "rg-1", "prompt_id": "p1", "status": "done", "outputs": ["x_restored.png"]}
    assert again.get("rg-2") == {}
    again.close()


def test_restore_py_needs_neither_torch_nor_comfyui(tmp_path):
    code = ("import sys, runpy; sys.modules.update(torch=None, comfy=None, folder_paths=None, server=None); "
            f"sys.argv = ['restore.py', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}]; "
            f"runpy.run_path({str(REPO_ROOT / 'restore.py')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert done.returncode == 2, done.stderr  # a usage error (empty folder), reached with every module imported
    assert "no image files found" in done.stderr


def test_a_non_image_is_refused_naming_the_users_file_not_a_buffer(tmp_path):
    from restoration_governor.batch.inputs import BadInput, Source, inspect

    path = tmp_path / "notes.png"
    path.write_text("shopping list, not a photo")
    bad = inspect(Source(path, Path("notes.png")))
    assert isinstance(bad, BadInput)
    assert "notes.png" in bad.reason and "BytesIO" not in bad.reason and " at 0x" not in bad.reason
    assert bad.reason.startswith("not a readable image")
