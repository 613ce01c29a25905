"""The governor in ComfyUI's real frontend: live queue position, toasts, the Governor tab, locales."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid

from harness.client import ComfyClient
from harness.governor import job, reset_governor, wait_job
from harness.graphs import fail_prompt, sleep_prompt
from PIL import Image
from playwright.async_api import expect

# Samples a row's state/position and the live indicator every 50 ms into window.__rgSamples.
START_SAMPLER = """(promptId) => {
  window.__rgSamples = [];
  const sample = () => {
    const row = document.querySelector(`.rg-job[data-prompt-id="${promptId}"]`);
    const pill = document.querySelector(".rg-indicator");
    const button = document.querySelector(".rg-actionbar");
    const line = button ? button.textContent : pill && !pill.hidden ? pill.textContent : null;
    window.__rgSamples.push([
      row ? row.dataset.state : null,
      row ? row.querySelector(".rg-job-position").textContent : null,
      line ? line.trim() : null,
    ]);
  };
  sample();
  window.__rgSampler = setInterval(sample, 50);
}"""
STOP_SAMPLER = "() => { clearInterval(window.__rgSampler); return window.__rgSamples; }"


async def _queue(c: ComfyClient, prompt: dict, client_id: str, **kw) -> str:
    return await c.queue_prompt(prompt, client_id=client_id, **kw)


def _overlap(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


async def _check_live_line_placement(p) -> None:
    """1.32: the floating line. Frontends with an action bar: a button there, which stays clear of
    the Job Queue overlay. Either one opens the Governor tab."""
    pill, button = p.page.locator(".rg-indicator"), p.page.locator(".rg-actionbar")
    if not p.new_frontend:
        assert await pill.is_visible() and await button.count() == 0
    else:
        assert await pill.is_hidden()
        toggle = "app.extensionManager.command.execute('Comfy.Queue.ToggleOverlay')"
        await p.page.evaluate(toggle)
        overlay = p.page.locator('[data-testid="queue-progress-overlay"]')
        await overlay.wait_for(state="visible")
        mine, theirs = await button.bounding_box(), await overlay.bounding_box()
        assert mine and theirs and not _overlap(mine, theirs), (mine, theirs)
        await p.screenshot("live-line-and-job-queue")
        await p.page.evaluate(toggle)
        await overlay.wait_for(state="hidden")
    await p.indicator().click()
    await p.page.locator(".rg-panel").wait_for(state="visible")


def _luminance(rgb) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


async def _memory_track_contrast(p) -> float:
    """Contrast of the memory bar's empty track against the panel around it, as rendered: the
    fill and the threshold marker are hidden, the pixels left of the bar are the background."""
    bar = p.page.locator(".rg-bar")
    await bar.evaluate("(el) => el.querySelectorAll('*').forEach((c) => { c.style.visibility = 'hidden'; })")
    box = await bar.bounding_box()
    margin = 4
    png = await p.page.screenshot(clip={"x": box["x"] - margin, "y": box["y"] - margin,
                                        "width": box["width"] + 2 * margin, "height": box["height"] + 2 * margin})
    await bar.evaluate("(el) => el.querySelectorAll('*').forEach((c) => { c.style.visibility = ''; })")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = image.width / (box["width"] + 2 * margin)
    background = image.getpixel((1, image.height // 2))
    column = round((margin + box["width"] / 2) * scale)
    track = [image.getpixel((column, y)) for y in range(round(margin * scale), round((margin + box["height"]) * scale))]
    return max(_contrast(pixel, background) for pixel in track)


def _changes(samples: list) -> list:
    out = []
    for s in samples:
        if not out or out[-1] != s:
            out.append(s)
    return out


async def test_page_loads_clean_and_the_tab_shows_the_governor_with_admin_controls(comfy_page, gov_http):
    p = await comfy_page()
    await expect(p.tab_button()).to_have_attribute(
        "aria-label", "Queue governor: my prompts, the shared GPU and the queue")
    await p.open_governor_tab()
    panel = p.page.locator(".rg-panel")
    # The panel fills its labels when its first status arrives: wait for them, never race them.
    await expect(panel.locator(".rg-title")).to_have_text("Governor")
    await panel.locator(".rg-pill", has_text="Running").wait_for()
    await expect(panel.locator(".rg-facts")).to_contain_text("of 1 in use")
    facts = " ".join((await panel.locator(".rg-facts").inner_text()).split())
    assert "RAM" in facts and "of 1 in use" in facts, facts  # a --cpu server gates on system RAM
    # The memory bar's track is visible on the (default) dark theme: 3:1, WCAG's bar for UI parts.
    contrast = await _memory_track_contrast(p)
    assert contrast >= 3.0, contrast
    await expect(panel.locator(".rg-empty")).to_have_text("Nothing queued from this browser tab yet.")
    assert await panel.locator(".rg-notice").is_hidden()
    # What the extension decided about this frontend: 1.32 binds its error dialog after extensions
    # load (errors may be held) and drops the packs' strings (repaired); 1.58 does neither.
    decided = await p.page.evaluate(
        "() => [window.restorationGovernor.errorHold.hold, Boolean(window.restorationGovernor.frontendMessages)]")
    assert decided == ([False, False] if p.new_frontend else [True, True]), decided

    # Loopback with no admin token may administer: the admin section works.
    admin = panel.locator(".rg-admin")
    await admin.wait_for(state="visible")
    await admin.locator('input[name="max_used_fraction"]').wait_for()
    await admin.locator('[data-action="pause"]').click()
    await panel.locator(".rg-pill", has_text="Paused").wait_for()
    assert (await gov_http.get("/governor/status")).ok().body["state"] == "paused"
    await p.screenshot("panel-admin")
    await admin.locator('[data-action="resume"]').click()
    await panel.locator(".rg-pill", has_text="Running").wait_for()
    assert (await gov_http.get("/governor/status")).ok().body["state"] == "running"
    assert p.pack_problems() == []


async def test_positions_count_down_and_cancel_from_the_panel_leaves_the_queue(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page()
    (await c.post("/governor/pause")).ok()
    slow = [await _queue(c, sleep_prompt(1.0, f"slow{i}", steps=5), p.client_id) for i in range(3)]
    extra = await _queue(c, sleep_prompt(1.0, "extra", steps=5), p.client_id)

    # Without opening anything, the page says where its next prompt stands.
    await p.indicator().filter(has_text="Queued — position 1 of 4").wait_for()
    assert "+3 more queued" in await p.indicator_text()
    assert "queue paused" in await p.indicator_text()
    await _check_live_line_placement(p)

    await p.open_governor_tab()
    for position, prompt_id in enumerate([*slow, extra], start=1):
        await p.row(prompt_id).locator(".rg-job-position", has_text=f"Position {position} of 4").wait_for()
    await p.screenshot("queued")

    await p.row(extra).locator('[data-action="cancel"]').click()
    await p.wait_row_state(extra, "cancelled")
    pending = [item[1] for item in (await c.queue())["queue_pending"]]
    assert extra not in pending and set(slow) <= set(pending)
    assert (await job(c, extra))["state"] == "cancelled"

    await p.row(slow[2]).locator(".rg-job-position", has_text="Position 3 of 3").wait_for()
    await p.page.evaluate(START_SAMPLER, slow[2])
    (await c.post("/governor/resume")).ok()
    await p.wait_row_state(slow[2], "success", timeout=30_000)
    samples = _changes(await p.page.evaluate(STOP_SAMPLER))
    seen = [position for state, position, _ in samples if state == "pending"]
    numbers = [int(m.group(1)) for m in (re.match(r"Position (\d+) of", s or "") for s in seen) if m]
    assert numbers[:1] == [3] and numbers == sorted(numbers, reverse=True), samples
    assert {3, 2, 1} <= set(numbers), samples
    states = [state for state, _, _ in samples]
    assert states.index("running") > max(i for i, s in enumerate(states) if s == "pending")
    indicator = [text for _, _, text in samples if text]
    assert any(t.startswith("Queued — position 1 of 2") for t in indicator), indicator
    assert any(t.startswith("Running") for t in indicator), indicator
    await p.screenshot("done")
    await p.indicator().wait_for(state="hidden")
    assert p.pack_problems() == []


async def test_retry_and_failure_show_toasts_and_the_panel_can_retry(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page()
    await p.open_governor_tab()
    await p.count_errors()
    key = uuid.uuid4().hex
    # Queued with the Run button's own code path, so the frontend reports its errors as its own.
    retried = await p.queue_from_editor(fail_prompt(f"oom-{key}", failures=1, error="oom"))
    await p.wait_toast("Retrying — attempt 2 of 3")
    await p.wait_row_state(retried, "success")
    await p.wait_toast("Finished")
    # The attempt the governor retried reached none of the frontend's listeners: no error report.
    assert await p.errors_seen(retried) == 0
    assert await p.error_report("CUDA out of memory", "RGTestFailNTimes").count() == 0

    broken = await p.queue_from_editor(fail_prompt(f"value-{key}", failures=5, error="value"))
    toast = await p.wait_toast("Failed")
    await expect(toast).to_contain_text("ValueError")
    await p.wait_row_state(broken, "failed")
    row = p.row(broken)
    await expect(row.locator(".rg-job-error")).to_contain_text("rg_test failure 1/5")
    # A real failure still gets the frontend's own report, exactly once.
    report = p.error_report("rg_test failure 1/5", "RGTestFailNTimes")
    await report.wait_for(state="visible")
    assert await p.errors_seen(broken) == 1
    assert await report.count() == 1
    await p.screenshot("failed")
    await p.page.keyboard.press("Escape")

    await row.locator('[data-action="retry"]').click()
    await wait_job(c, broken, "failed", timeout=30)  # queued again, ran again, failed again
    final = await job(c, broken)
    assert len(final["errors"]) == 2 and "2/5" in final["last_error"]["message"]
    await p.page.locator(f'.rg-job[data-prompt-id="{broken}"] .rg-job-error', has_text="2/5").wait_for()
    assert await p.errors_seen(broken) == 2  # one report per real failure
    assert p.pack_problems() == []


async def test_queue_timeout_and_memory_wait_show_toasts(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page()
    blocker = await _queue(c, sleep_prompt(30.0, "blocker", steps=300), "another-client")  # holds the slot
    await wait_job(c, blocker, "running")
    await p.count_errors()
    timed_out = await _queue(c, sleep_prompt(0.1, "short-lived"), p.client_id, headers={"X-Queue-Timeout": "1"})
    await p.wait_toast("Timed out in the queue")
    (await c.post(f"/governor/jobs/{blocker}/cancel")).ok()
    # The governor also tells ComfyUI's own client code (execution_error), once. 1.32's dialog shows
    # the reason; 1.58 reports errors only of runs queued from the editor itself (this one was not).
    deadline = time.monotonic() + 10
    while await p.errors_seen(timed_out) != 1:
        assert time.monotonic() < deadline, "the queue timeout never reached the frontend"
        await asyncio.sleep(0.1)
    if not p.new_frontend:
        dialog = p.page.locator(".p-dialog", has_text="Queue timeout")
        await dialog.wait_for(state="visible")
        await p.page.keyboard.press("Escape")
        await dialog.wait_for(state="hidden")

    (await c.patch("/governor/config", {"max_used_fraction": 0.01})).ok()  # RAM is always above 1 %
    (await c.post("/governor/resume")).ok()
    waiting = await _queue(c, sleep_prompt(0.1, "starved"), p.client_id)
    await p.wait_toast("Waiting for memory")
    await p.indicator().filter(has_text="Waiting for memory — position 1 of 1").wait_for()
    await p.open_governor_tab()
    await p.page.locator(".rg-facts", has_text="Closed:").wait_for()
    await p.wait_row_state(waiting, "waiting_for_memory")
    await p.screenshot("waiting-for-memory")
    (await c.post(f"/governor/jobs/{waiting}/cancel")).ok()
    await p.wait_toast("Cancelled")
    assert p.pack_problems() == []


async def test_chinese_browser_gets_chinese_labels(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page(locale="zh-CN")
    # The frontend translates the tab itself, from the pack's locales/zh strings.
    await expect(p.tab_button()).to_have_attribute(
        "aria-label", "队列调度：我的任务、共享显卡和队列状态")
    await p.open_governor_tab()
    panel = p.page.locator(".rg-panel")
    await expect(panel.locator(".rg-title")).to_have_text("队列调度")
    await expect(panel.locator(".rg-mine h3")).to_have_text("我的任务")
    # A --cpu server gates on system RAM: 内存, never 显存 (GPU memory), wherever the panel names it.
    facts = panel.locator(".rg-facts")
    await expect(facts).to_contain_text("内存检查")
    await expect(facts).not_to_contain_text("显存")
    (await c.post("/governor/pause")).ok()
    queued = await _queue(c, sleep_prompt(0.1, "zh"), p.client_id)
    await p.indicator().filter(has_text="排队中 — 第 1 位，共 1 个").wait_for()
    await p.row(queued).locator(".rg-chip", has_text="排队中").wait_for()
    await panel.locator(".rg-pill", has_text="已暂停").wait_for()
    await panel.locator(".rg-admin button", has_text="恢复").wait_for()
    await p.screenshot("panel-zh")
    (await c.post("/governor/resume")).ok()
    await p.wait_toast("已完成")

    # Our settings in ComfyUI's settings dialog, in Chinese too.
    await p.page.evaluate("app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    await p.page.get_by_text("修复与队列调度", exact=True).click()
    await p.page.get_by_text("我提交任务的优先级").wait_for()
    await p.page.get_by_text("任务排队时显示我的排队位置").wait_for()
    await p.screenshot("settings-zh")

    # The pack's nodes, in the graph editor's own node registry, carry their Chinese names.
    titles = await p.page.evaluate(
        "(names) => names.map((n) => window.LiteGraph.registered_node_types[n]?.title ?? null)",
        ["DDColorColorize", "GPENRestoreFaces"])
    assert titles == ["DDColor 上色", "GPEN 人脸修复"], titles
    await _check_zh_node_strings_cover_every_node(c)
    assert p.pack_problems() == []  # includes vue-i18n warnings about missing zh keys of ours


async def _check_zh_node_strings_cover_every_node(c: ComfyClient) -> None:
    """locales/zh/nodeDefs.json names every node, input and output of the pack the server lists,
    and has a tooltip wherever the English definition has one."""
    info = (await c.get("/object_info")).ok().body
    zh = (await c.get("/i18n")).ok().body["zh"]["nodeDefs"]
    missing = []
    for name, node in info.items():
        if not node.get("category", "").startswith("restoration-governor"):
            continue
        ours = zh.get(name) or {}
        missing += [f"{name}.{field}" for field in ("display_name", "description")
                    if node.get(field) and not ours.get(field)]
        for section in ("required", "optional"):
            for inp, spec in node["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                entry = ours.get("inputs", {}).get(inp, {})
                missing += [f"{name}.inputs.{inp}.{field}" for field, needed in
                            (("name", True), ("tooltip", bool(options.get("tooltip")))) if needed and not entry.get(field)]
        for index, tooltip in enumerate(node.get("output_tooltips") or [None] * len(node["output"])):
            entry = ours.get("outputs", {}).get(str(index), {})
            missing += [f"{name}.outputs.{index}.{field}" for field, needed in
                        (("name", True), ("tooltip", bool(tooltip))) if needed and not entry.get(field)]
    assert not missing, missing


async def test_without_admin_rights_the_admin_controls_are_hidden(comfy_page, gov_http):
    c = gov_http
    token = uuid.uuid4().hex
    (await c.patch("/governor/config", {"admin_token": token})).ok()
    try:
        p = await comfy_page()
        await p.open_governor_tab()
        await p.page.locator(".rg-facts").wait_for()
        assert await p.page.locator(".rg-admin").is_hidden()
        # The graph editor's own queue call carries our default priority; high needs admin rights.
        (await c.post("/governor/pause", headers={"Authorization": f"Bearer {token}"})).ok()
        mine = await _queue(c, sleep_prompt(0.1, "mine"), p.client_id)
        high = p.row(mine).locator('select.rg-priority option[value="high"]')
        await high.wait_for(state="attached")
        assert await high.is_disabled()
        await p.row(mine).locator("select.rg-priority").select_option("low")
        await wait_job(c, mine, "pending")
        deadline = time.monotonic() + 10
        while (await job(c, mine, {"Authorization": f"Bearer {token}"}))["priority"] != "low":
            assert time.monotonic() < deadline, "priority change from the panel never reached the governor"
            await asyncio.sleep(0.1)
        assert p.pack_problems() == []
    finally:
        await reset_governor(c, token)


async def test_missing_governor_api_is_reported_once_without_an_error_storm(comfy_page, gov_http):
    requests: list[str] = []

    async def old_server(page):
        async def not_found(route):
            requests.append(route.request.url)
            await route.fulfill(status=404, content_type="text/plain", body="404: Not Found")
        await page.route(re.compile(r".*/api/governor/.*"), not_found)

    p = await comfy_page(before_load=old_server)
    await p.open_governor_tab()
    notice = p.page.locator(".rg-notice")
    await notice.wait_for(state="visible")
    await expect(notice).to_contain_text("no queue governor API")
    assert await p.page.locator(".rg-notice:visible").count() == 1
    opened = len(requests)
    await p.page.wait_for_timeout(8000)
    # 2 s polling would have asked 4 times; backing off (4 s, 8 s, ...) asks at most twice.
    assert len(requests) - opened <= 2, requests
    await p.screenshot("api-missing")
    errors = [c for c in p.console if c.type == "error" and c.from_pack()]
    assert len(errors) <= len(requests), errors  # only the browser's own line per failed request
    assert not [e for e in p.page_errors if "governor" in e.lower()]
    assert await p.page.locator(".rg-notice:visible").count() == 1
