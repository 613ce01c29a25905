"""The governor in ComfyUI's real frontend: live queue position, toasts, the Governor tab, locales."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from harness.client import ComfyClient
from harness.governor import job, reset_governor, wait_job
from harness.graphs import fail_prompt, sleep_prompt
from playwright.async_api import expect

# Samples a row's state/position and the live indicator every 50 ms into window.__rgSamples.
START_SAMPLER = """(promptId) => {
  window.__rgSamples = [];
  const sample = () => {
    const row = document.querySelector(`.rg-job[data-prompt-id="${promptId}"]`);
    const indicator = document.querySelector(".rg-indicator");
    window.__rgSamples.push([
      row ? row.dataset.state : null,
      row ? row.querySelector(".rg-job-position").textContent : null,
      indicator && !indicator.hidden ? indicator.textContent : null,
    ]);
  };
  sample();
  window.__rgSampler = setInterval(sample, 50);
}"""
STOP_SAMPLER = "() => { clearInterval(window.__rgSampler); return window.__rgSamples; }"


async def _queue(c: ComfyClient, prompt: dict, client_id: str, **kw) -> str:
    return await c.queue_prompt(prompt, client_id=client_id, **kw)


def _changes(samples: list) -> list:
    out = []
    for s in samples:
        if not out or out[-1] != s:
            out.append(s)
    return out


async def test_page_loads_clean_and_the_tab_shows_the_governor_with_admin_controls(comfy_page, gov_http):
    p = await comfy_page()
    await expect(p.page.locator(".restoration-governor-tab-button")).to_have_attribute(
        "aria-label", "Queue governor: my prompts, the shared GPU and the queue")
    await p.open_governor_tab()
    panel = p.page.locator(".rg-panel")
    # The panel fills its labels when its first status arrives: wait for them, never race them.
    await expect(panel.locator(".rg-title")).to_have_text("Governor")
    await panel.locator(".rg-pill", has_text="Running").wait_for()
    await expect(panel.locator(".rg-facts")).to_contain_text("of 1 in use")
    facts = " ".join((await panel.locator(".rg-facts").inner_text()).split())
    assert "RAM" in facts and "of 1 in use" in facts, facts  # a --cpu server gates on system RAM
    await expect(panel.locator(".rg-empty")).to_have_text("Nothing queued from this browser tab yet.")
    assert await panel.locator(".rg-notice").is_hidden()

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
    await p.page.locator(".rg-indicator", has_text="Queued — position 1 of 4").wait_for()
    assert "+3 more queued" in await p.indicator_text()
    assert "queue paused" in await p.indicator_text()

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
    await p.page.locator(".rg-indicator").wait_for(state="hidden")
    assert p.pack_problems() == []


async def test_retry_and_failure_show_toasts_and_the_panel_can_retry(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page()
    await p.open_governor_tab()
    key = uuid.uuid4().hex
    retried = await _queue(c, fail_prompt(f"oom-{key}", failures=1, error="oom"), p.client_id)
    await p.wait_toast("Retrying — attempt 2 of 3")
    await p.wait_row_state(retried, "success")
    await p.wait_toast("Finished")
    # The attempt the governor retried is not reported as a failure by ComfyUI's error dialog.
    assert await p.page.locator(".p-dialog", has_text="CUDA out of memory").count() == 0

    broken = await _queue(c, fail_prompt(f"value-{key}", failures=5, error="value"), p.client_id)
    toast = await p.wait_toast("Failed")
    await expect(toast).to_contain_text("ValueError")
    await p.wait_row_state(broken, "failed")
    row = p.row(broken)
    await expect(row.locator(".rg-job-error")).to_contain_text("rg_test failure 1/5")
    # A real failure still gets ComfyUI's own error dialog.
    dialog = p.page.locator(".p-dialog", has_text="rg_test failure 1/5")
    await dialog.wait_for(state="visible")
    await p.page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")
    await p.screenshot("failed")

    await row.locator('[data-action="retry"]').click()
    await wait_job(c, broken, "failed", timeout=30)  # queued again, ran again, failed again
    final = await job(c, broken)
    assert len(final["errors"]) == 2 and "2/5" in final["last_error"]["message"]
    await p.page.locator(f'.rg-job[data-prompt-id="{broken}"] .rg-job-error', has_text="2/5").wait_for()
    assert p.pack_problems() == []


async def test_queue_timeout_and_memory_wait_show_toasts(comfy_page, gov_http):
    c = gov_http
    p = await comfy_page()
    blocker = await _queue(c, sleep_prompt(30.0, "blocker", steps=300), "another-client")  # holds the slot
    await wait_job(c, blocker, "running")
    await _queue(c, sleep_prompt(0.1, "short-lived"), p.client_id, headers={"X-Queue-Timeout": "1"})
    await p.wait_toast("Timed out in the queue")
    (await c.post(f"/governor/jobs/{blocker}/cancel")).ok()
    # The governor also tells ComfyUI's own client code (execution_error): its dialog shows the reason.
    dialog = p.page.locator(".p-dialog", has_text="Queue timeout")
    await dialog.wait_for(state="visible")
    await p.page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")

    (await c.patch("/governor/config", {"max_used_fraction": 0.01})).ok()  # RAM is always above 1 %
    (await c.post("/governor/resume")).ok()
    waiting = await _queue(c, sleep_prompt(0.1, "starved"), p.client_id)
    await p.wait_toast("Waiting for memory")
    await p.page.locator(".rg-indicator", has_text="Waiting for memory — position 1 of 1").wait_for()
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
    await expect(p.page.locator(".restoration-governor-tab-button")).to_have_attribute(
        "aria-label", "队列调度：我的任务、共享显卡和队列状态")
    await p.open_governor_tab()
    panel = p.page.locator(".rg-panel")
    await expect(panel.locator(".rg-title")).to_have_text("队列调度")
    await expect(panel.locator(".rg-mine h3")).to_have_text("我的任务")
    (await c.post("/governor/pause")).ok()
    queued = await _queue(c, sleep_prompt(0.1, "zh"), p.client_id)
    await p.page.locator(".rg-indicator", has_text="排队中 — 第 1 位，共 1 个").wait_for()
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
    assert p.pack_problems() == []  # includes vue-i18n warnings about missing zh keys of ours


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
