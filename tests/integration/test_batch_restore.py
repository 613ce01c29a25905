"""``restore.py`` against a real ComfyUI server with a random-weight DDColor checkpoint.

The command runs as a user runs it (a subprocess, ``--json`` events on stdout). Prompts the
server admitted are counted with ``GET /governor/jobs?client_id=``: an idempotent replay admits
nothing, so the count is the number of prompts really submitted.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness.client import ComfyClient
from harness.ddcolor_checkpoints import install_checkpoint
from harness.governor import reset_governor
from harness.paths import REPO_ROOT
from harness.workflow_format import load_api_twin
from PIL import Image
from restoration_governor.batch.output import encode_png16

RESTORE = REPO_ROOT / "restore.py"
CHECKPOINT = "ddcolor_artistic.pth"  # what the person template loads


def _tones(width: int, height: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = 0.5 + 0.3 * np.sin(x / (5 + seed)) * np.cos(y / 7.0) + 0.1 * ((x // 12 + y // 12) % 2)
    return np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)


def _gray8(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray((_tones(w, h, seed) * 255).astype(np.uint8), "L")


def _gray16(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray((_tones(w, h, seed) * 65535).astype(np.uint16))


def make_mixed_folder(root: Path) -> dict[str, str]:
    """12 files: 10 good ones (8/16-bit, gray/RGB/RGBA, 5 formats, nested, EXIF-rotated), a corrupt
    JPEG and one over the pixel cap. Returns {relative path: expected status}."""
    (root / "album" / "page1").mkdir(parents=True)
    (root / "album" / "page2" / "loose").mkdir(parents=True)
    _gray8(96, 64, 1).save(root / "gray8.png")
    rgb = _gray8(80, 60, 2).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # shot rotated: the upright photo is 60 x 80
    rgb.save(root / "rotated.jpg", quality=90, exif=exif.tobytes())
    rgba = _gray8(64, 64, 3).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(root / "album" / "rgba.png")
    _gray16(72, 56, 4).save(root / "album" / "page1" / "gray16.png")
    tones = (np.stack([_tones(64, 48, 5)] * 3, axis=-1) * 65535).astype(np.uint16)
    (root / "album" / "page1" / "rgb16.png").write_bytes(encode_png16(tones))
    _gray8(70, 50, 6).save(root / "album" / "page2" / "scan.tif")
    _gray16(66, 44, 7).save(root / "album" / "page2" / "scan16.tif")
    _gray8(60, 60, 8).convert("RGB").save(root / "album" / "page2" / "loose" / "print.bmp")
    _gray8(64, 40, 9).convert("RGB").save(root / "album" / "page2" / "loose" / "print.webp")
    _gray8(50, 70, 10).convert("RGB").save(root / "album" / "tall.jpg")
    buf = io.BytesIO()
    _gray8(64, 64, 11).convert("RGB").save(buf, "JPEG")
    (root / "album" / "corrupt.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    Image.new("L", (1100, 1000), 128).save(root / "album" / "page2" / "huge.png")  # 1.1 MP > the 1 MP cap
    expected = {p.relative_to(root).as_posix(): "done" for p in root.rglob("*") if p.is_file()}
    expected["album/corrupt.jpg"] = expected["album/page2/huge.png"] = "bad_input"
    assert len(expected) == 12
    return expected


@pytest.fixture
def fast_workflow(tmp_path: Path, comfy_server) -> Path:
    """The person template at the smallest model size (a user's own API workflow, passed by path)."""
    install_checkpoint(comfy_server.models_dir / "ddcolor" / CHECKPOINT, "convnext-t")
    api = load_api_twin("DDColor Person Restore")
    for node in api.values():
        if node["class_type"] == "DDColorColorize":
            node["inputs"].update(preset="custom", input_size=64, ab_upsample="bilinear")
    path = tmp_path / "fast-person.json"
    path.write_text(json.dumps(api))
    return path


def restore_cmd(server_url: str, inputs: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(RESTORE), str(inputs), "--out", str(out), "--server", server_url, "--json",
            "--client-id", f"batch-test-{out.parent.name}", *extra]


def run_restore(cmd: list[str], timeout: float = 300) -> tuple[int, list[dict]]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events


async def admitted(server_url: str, client_id: str) -> list[str]:
    async with ComfyClient(server_url) as c:
        body = (await c.get(f"/governor/jobs?client_id={client_id}&limit=1000")).ok().body
    return [j["prompt_id"] for j in body["jobs"]]


def report(out: Path) -> dict[str, dict]:
    data = json.loads((out / "restore-report.json").read_text())
    return {row["file"]: row for row in data["files"]}


async def test_a_mixed_folder_restores_every_good_photo_once_and_reports_the_bad_ones(
        comfy_server, fast_workflow, tmp_path):
    expected = make_mixed_folder(tmp_path / "scans")
    out = tmp_path / "restored"
    async with ComfyClient(comfy_server.url) as c:
        await reset_governor(c)
        (await c.patch("/governor/config", {"upload_max_pixels": 1_000_000})).ok()
    try:
        rc, events = await asyncio.to_thread(
            run_restore, restore_cmd(comfy_server.url, tmp_path / "scans", out, "--mode", str(fast_workflow),
                                     "--png16", "--max-queued", "3"))
        rows = report(out)
        # The same command again: nothing new is submitted, every result is found on disk.
        rc2, events2 = await asyncio.to_thread(
            run_restore, restore_cmd(comfy_server.url, tmp_path / "scans", out, "--mode", str(fast_workflow)))
    finally:
        async with ComfyClient(comfy_server.url) as c:
            await reset_governor(c)
    assert rc == 1, "bad inputs make the exit code 1"
    assert {f: r["status"] for f, r in rows.items()} == expected
    assert "not a readable image" in rows["album/corrupt.jpg"]["error"]
    assert "1100x1000" in rows["album/page2/huge.png"]["error"]
    assert "at most 1000000" in rows["album/page2/huge.png"]["error"]
    for name, status in expected.items():
        if status != "done":
            continue
        stem = Path(name).stem if "print." not in name else Path(name).name.replace(".", "_")
        result = out / Path(name).parent / f"{stem}_restored.png"  # print.bmp + print.webp: both keep the ext
        assert rows[name]["outputs"] == [result.relative_to(out).as_posix()]
        with Image.open(tmp_path / "scans" / name) as src, Image.open(result) as res:
            w, h = src.size
            assert res.size == ((h, w) if name == "rotated.jpg" else (w, h)), name
            rgb = np.asarray(res.convert("RGB")).astype(int)
        chroma = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
        assert chroma.mean() > 3, f"{name}: still gray"
    for sixteen in ("album/page1/gray16.png", "album/page1/rgb16.png"):
        data = (out / sixteen.replace(".png", "_restored.png")).read_bytes()
        assert data[24] == 16, f"{sixteen}: --png16 keeps 16-bit scans 16-bit"
    assert (out / "gray8_restored.png").read_bytes()[24] == 8
    csv_lines = (out / "restore-report.csv").read_text().splitlines()
    assert csv_lines[0] == "file,hash,prompt_id,status,seconds,error,outputs" and len(csv_lines) == 13
    prompts = await admitted(comfy_server.url, f"batch-test-{out.parent.name}")
    assert len(prompts) == 10 == len(set(prompts))
    assert sorted(prompts) == sorted(r["prompt_id"] for r in rows.values() if r["status"] == "done")
    assert sum(e["event"] == "submitted" for e in events) == 10

    assert rc2 == 1 and not any(e["event"] == "submitted" for e in events2)
    assert {f: r["status"] for f, r in report(out).items()} == {
        f: ("skipped" if s == "done" else s) for f, s in expected.items()}
    assert len(await admitted(comfy_server.url, f"batch-test-{out.parent.name}")) == 10


def _photos(root: Path, count: int, salt: int) -> None:
    """``count`` small gray photos in two folders; ``salt`` makes them differ from other tests' photos
    (the server remembers idempotency keys, which come from the content, for a day)."""
    for i in range(count):
        sub = root / f"roll{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        _gray8(96, 72, 20 + i + salt).save(sub / f"frame{i:02}.png")


def _follow(proc: subprocess.Popen, until, events: list[dict]) -> None:
    """Read ``--json`` events from ``proc`` until ``until(events)`` holds (or the command ends)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            if until(events):
                return


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill-9"])
async def test_a_batch_stopped_halfway_resumes_without_submitting_any_photo_twice(
        comfy_server, fast_workflow, tmp_path, how):
    _photos(tmp_path / "scans", 6, salt={"ctrl-c": 100, "sigterm": 300, "kill-9": 200}[how])
    out = tmp_path / "restored"
    cmd = restore_cmd(comfy_server.url, tmp_path / "scans", out, "--mode", str(fast_workflow), "--max-queued", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/")
    events: list[dict] = []
    try:
        await asyncio.to_thread(_follow, proc, lambda ev: sum(e["event"] == "done" for e in ev) >= 2, events)
        proc.send_signal({"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "kill-9": signal.SIGKILL}[how])
        first_rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first_rc == (-9 if how == "kill-9" else 130)
    if how != "kill-9":  # stopped like Ctrl-C (cron's timeout, systemd): the report says what was done
        assert sum(r["status"] == "done" for r in report(out).values()) >= 2
    submitted_first = {e["prompt_id"] for e in events if e["event"] == "submitted"}
    assert 2 <= len(submitted_first) < 6, "stopped halfway"

    rc, events = await asyncio.to_thread(run_restore, cmd)
    assert rc == 0
    rows = report(out)
    assert len(rows) == 6 and all(r["status"] in ("done", "skipped") for r in rows.values())
    assert sum(r["status"] == "skipped" for r in rows.values()) >= 2
    prompts = await admitted(comfy_server.url, f"batch-test-{out.parent.name}")
    assert len(prompts) == 6 == len(set(prompts)), "a photo was submitted twice"
    assert {r["prompt_id"] for r in rows.values()} == set(prompts)
    assert all((out / r["outputs"][0]).is_file() for r in rows.values())


async def test_the_batch_completes_after_the_server_is_killed_and_restarted(comfy_server, fast_workflow, tmp_path):
    _photos(tmp_path / "scans", 6, salt=300)
    out = tmp_path / "restored"
    cmd = restore_cmd(comfy_server.url, tmp_path / "scans", out, "--mode", str(fast_workflow), "--max-queued", "3")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/")
    events: list[dict] = []
    try:
        await asyncio.to_thread(_follow, proc, lambda ev: any(e["event"] == "done" for e in ev), events)
        comfy_server.kill()
        await asyncio.to_thread(_follow, proc, lambda ev: ev[-1]["event"] == "waiting", events)
        await asyncio.to_thread(comfy_server.start)
        await asyncio.to_thread(_follow, proc, lambda ev: False, events)
        rc = await asyncio.to_thread(proc.wait, 240)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert rc == 0, events[-5:]
    rows = report(out)
    assert all(r["status"] == "done" for r in rows.values()), rows
    assert any("unreachable" in str(e.get("why")) for e in events if e["event"] == "waiting")
    prompts = await admitted(comfy_server.url, f"batch-test-{out.parent.name}")
    assert len(prompts) == 6 == len(set(prompts))
    assert {r["prompt_id"] for r in rows.values()} == set(prompts)


async def test_the_shipped_person_template_by_mode_name_gives_the_editors_pixels(comfy_server, tmp_path):
    install_checkpoint(comfy_server.models_dir / "ddcolor" / CHECKPOINT, "convnext-t")
    _gray16(80, 64, 30).save(tmp_path / "portrait.png")  # a 16-bit grayscale scan
    out = tmp_path / "restored"
    cmd = [c for c in restore_cmd(comfy_server.url, tmp_path / "portrait.png", out, "--mode", "person")
           if c != "--json"]  # the progress bar a person sees
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr
    assert "done 1" in done.stderr and "failed 0" in done.stderr
    row = report(out)["portrait.png"]
    assert row["status"] == "done"

    # The same photo through the template as the editor queues it: the same pixels.
    api = load_api_twin("DDColor Person Restore")
    loader = next(n for n in api.values() if n["class_type"] in ("LoadImage", "RestorationLoadImage"))
    (comfy_server.input_dir / "editor-portrait.png").write_bytes((tmp_path / "portrait.png").read_bytes())
    loader["inputs"]["image"] = "editor-portrait.png"
    async with ComfyClient(comfy_server.url) as c:
        entry = await c.run(api, timeout=300)
    saved = next(img for o in entry["outputs"].values() for img in o.get("images", []) if img["type"] == "output")
    with Image.open(comfy_server.output_dir / saved["subfolder"] / saved["filename"]) as editor, \
            Image.open(out / "portrait_restored.png") as batch:
        assert batch.size == editor.size == (80, 64)
        assert np.array_equal(np.asarray(batch), np.asarray(editor))


async def test_a_full_queue_is_waited_out_with_retry_after_and_batches_queue_at_low_priority(
        comfy_server, fast_workflow, tmp_path):
    _photos(tmp_path / "scans", 3, salt=400)
    out = tmp_path / "restored"
    cmd = restore_cmd(comfy_server.url, tmp_path / "scans", out, "--mode", str(fast_workflow), "--max-queued", "3")
    async with ComfyClient(comfy_server.url) as c:
        await reset_governor(c)
        (await c.post("/governor/pause")).ok()
        (await c.patch("/governor/config", {"max_pending_per_client": 1})).ok()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/")
        events: list[dict] = []
        try:
            await asyncio.to_thread(_follow, proc, lambda ev: any(e["event"] == "waiting" for e in ev), events)
            waiting = next(e for e in events if e["event"] == "waiting")
            assert waiting["why"] == "server busy (queue full)" and waiting["retry_in_s"] >= 1
            first = next(e for e in events if e["event"] == "submitted")
            assert (await c.get(f"/governor/jobs/{first['prompt_id']}")).ok().body["priority"] == "low"
            (await c.patch("/governor/config", {"max_pending_per_client": 2000})).ok()
            (await c.post("/governor/resume")).ok()
            await asyncio.to_thread(_follow, proc, lambda ev: False, events)
            rc = await asyncio.to_thread(proc.wait, 120)
        finally:
            if proc.poll() is None:
                proc.kill()
            await reset_governor(c)
    assert rc == 0
    assert [r["status"] for r in report(out).values()] == ["done"] * 3
    assert len(await admitted(comfy_server.url, f"batch-test-{out.parent.name}")) == 3
