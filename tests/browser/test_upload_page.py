"""The upload page at /restoration/ in headless Chromium, against the real server and a random-weight
DDColor checkpoint: upload 3 photos, watch their queue positions move, reload mid-way, download
one result and all of them as a zip — in English and in Chinese, and on a phone-sized screen."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from harness.ddcolor_checkpoints import install_checkpoint
from harness.paths import PACK_FOLDER_NAME, REPO_ROOT
from harness.screenshots import small_png
from PIL import Image

DOCS_IMAGES = REPO_ROOT / "docs" / "images"
TEXTS = {
    "en-US": {"queued": "position", "busy": "Server busy, retrying in", "done": "Done", "all": "Download all (zip)"},
    "zh-CN": {"queued": "排队中 — 第", "busy": "服务器繁忙", "done": "完成", "all": "全部下载（zip）"},
}


def _photos(folder: Path, salt: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(3):
        y, x = np.mgrid[0:72, 0:96]
        gray = 128 + 60 * np.sin(x / (4 + i + salt)) * np.cos(y / 9) + 20 * ((x // 16 + y // 16) % 2)
        path = folder / f"scan-{i + 1}.png"
        Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


async def _positions(page) -> list[int | None]:
    return await page.evaluate("restorationUpload.jobs.map(j => j.position ?? null)")


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
async def test_upload_watch_reload_and_download(comfy_server, gov_http, launch_chromium, tmp_path, locale):
    install_checkpoint(comfy_server.models_dir / "ddcolor" / "ddcolor_artistic.pth", "convnext-t")
    text = TEXTS[locale]
    (await gov_http.post("/governor/pause")).ok()
    (await gov_http.patch("/governor/config", {"max_pending": 2})).ok()  # the third photo meets a full queue
    context = await launch_chromium(locale)
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.set_viewport_size({"width": 1000, "height": 760})
    await page.goto(comfy_server.url + "/restoration/")
    await page.wait_for_selector("body[data-ready=true]")
    await page.locator("input[name=mode][value=person]").check()
    await page.set_input_files(".rg-drop input", [str(p) for p in _photos(tmp_path / "in", len(locale))])

    cards = page.locator(".rg-photo")
    await page.wait_for_function("document.querySelectorAll('.rg-photo[data-prompt-id]').length === 2")
    busy = page.locator(".rg-photo .rg-status", has_text=text["busy"])
    await busy.wait_for()
    assert sorted(p for p in await _positions(page) if p is not None) == [1, 2]
    await cards.filter(has_text=text["queued"]).first.wait_for()
    if locale == "en-US":
        assert "position 2 of 2" in await page.locator(".rg-photos").inner_text()
    await page.screenshot(path=str(tmp_path / "queued.png"))

    # Reload mid-way (the third photo still waiting to be let in): the photos stay listed, the two
    # queued ones re-attach to their prompts, the third is sent (under the same key: never twice).
    (await gov_http.patch("/governor/config", {"max_pending": 10000})).ok()
    await page.reload()
    await page.wait_for_selector("body[data-ready=true]")
    assert await cards.count() == 3
    await page.wait_for_function("document.querySelectorAll('.rg-photo[data-prompt-id]').length === 3",
                                 timeout=30_000)
    first_positions = await _positions(page)
    assert sorted(first_positions) == [1, 2, 3]
    (await gov_http.post("/governor/resume")).ok()
    last = first_positions.index(3)
    await page.wait_for_function(
        f"(() => {{ const j = restorationUpload.jobs[{last}]; return j.state === 'running' || j.position < 3 ||"
        " j.state === 'success'; })()", timeout=60_000)
    await page.wait_for_function(  # done, and the result fetched from the history
        "document.querySelectorAll('.rg-photo[data-state=success] .rg-compare').length === 3", timeout=120_000)
    statuses = await page.locator(".rg-photo .rg-status").all_inner_texts()
    assert statuses == [text["done"]] * 3
    assert await page.locator(".rg-compare").count() == 3

    async with page.expect_download() as one:
        await page.locator(".rg-download").first.click()
    with Image.open(await (await one.value).path()) as result:
        assert result.size == (96, 72) and result.mode == "RGB"
    async with page.expect_download() as everything:
        await page.get_by_role("button", name=text["all"]).click()
    archive = zipfile.ZipFile(io.BytesIO(Path(await (await everything.value).path()).read_bytes()))
    assert sorted(archive.namelist()) == ["scan-1_restored.png", "scan-2_restored.png", "scan-3_restored.png"]
    for name in archive.namelist():
        with Image.open(io.BytesIO(archive.read(name))) as img:
            assert img.size == (96, 72)

    slider = page.locator(".rg-compare input").first
    await slider.fill("20")
    clip = await page.locator(".rg-compare .rg-after").first.evaluate("e => e.style.clipPath")
    assert clip == "inset(0px 0px 0px 20%)"
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 900, "height": 700})
    await page.evaluate("window.scrollTo(0, 0)")
    small_png(await page.screenshot(full_page=True), DOCS_IMAGES / f"upload-page-{locale[:2]}.png")
    assert not errors, errors


async def test_the_page_fits_a_phone_and_is_not_loaded_into_the_graph_editor(comfy_server, launch_chromium,
                                                                             tmp_path):
    context = await launch_chromium("en-US")
    page = context.pages[0] if context.pages else await context.new_page()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(comfy_server.url + "/restoration/")
    await page.wait_for_selector("body[data-ready=true]")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    box = await page.locator(".rg-drop").bounding_box()
    assert box["width"] > 300 and box["height"] >= 100
    fake = tmp_path / "grandma-1952.png"
    fake.write_bytes(b"this is not a photo" * 10)  # refused by the upload checks
    await page.set_input_files(".rg-drop input", [str(fake)])
    status = page.locator('.rg-photo[data-state="failed"] .rg-status')
    await status.wait_for()
    said = await status.inner_text()
    assert "grandma-1952.png" in said and not any(len(w) >= 32 and w[:32].isalnum() for w in said.split()), said
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # the reason wraps on a phone
    thumbs = await page.locator(".rg-mode img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert thumbs and all(w > 0 for w in thumbs), "every mode shows its template's thumbnail"
    extensions = await (await page.request.get(comfy_server.url + "/extensions")).json()
    page_scripts = {p.stem for p in (REPO_ROOT / "upload_page" / "static").glob("*.mjs")}
    assert page_scripts >= {"app", "jobs", "api", "zip"}
    loaded = [e for e in extensions if PACK_FOLDER_NAME in e and Path(e).stem in page_scripts]
    assert loaded == [], "the page's scripts must not run inside the graph editor"
    assert (await page.request.get(comfy_server.url + "/restoration/workflows/person.json")).ok
    assert (await page.request.get(comfy_server.url + "/restoration/static/..%2Fa.py")).status == 404


async def test_a_failed_photo_says_why_in_plain_words_and_try_again_restores_it(
        comfy_server, gov_http, launch_chromium, tmp_path):
    from harness.governor import wait_job
    from harness.graphs import sleep_prompt

    install_checkpoint(comfy_server.models_dir / "ddcolor" / "ddcolor_artistic.pth", "convnext-t")
    (await gov_http.patch("/governor/config", {"queue_timeout": 2})).ok()
    blocker = await gov_http.queue_prompt(sleep_prompt(30, "blocker", steps=300), client_id="someone-else")
    await wait_job(gov_http, blocker, "running")
    context = await launch_chromium("en-US")
    page = context.pages[0] if context.pages else await context.new_page()
    await page.goto(comfy_server.url + "/restoration/")
    await page.wait_for_selector("body[data-ready=true]")
    await page.locator("input[name=mode][value=person]").check()
    await page.set_input_files(".rg-drop input", [str(_photos(tmp_path / "in", 7)[0])])
    failed = page.locator(".rg-photo[data-state=failed]")
    await failed.wait_for(timeout=30_000)
    assert (await failed.locator(".rg-status").inner_text()).startswith("Failed: it waited too long in the queue")

    (await gov_http.patch("/governor/config", {"queue_timeout": 300})).ok()
    (await gov_http.post(f"/governor/jobs/{blocker}/cancel")).ok()
    await failed.get_by_role("button", name="Try again").click()
    await page.locator(".rg-photo[data-state=success] .rg-compare").wait_for(timeout=120_000)
    assert await page.locator(".rg-photo").count() == 1
