"""Frontend 1.58's own Job Queue overlay on the governed queue (0.3.75 core, whose ``/api/jobs`` the
governor serves): what it lists, how it cancels, and its history after a queue-timeout failure.

Runs once, on the newer frontend only: 1.32 has no such overlay (its queue tab reads ``/queue``, which
the other browser tests cover on both frontends).
"""

from __future__ import annotations

from harness.client import ComfyClient
from harness.governor import job, reset_governor, wait_job
from harness.graphs import sleep_prompt

# "~N jobs ahead of yours" exactly as 1.58's job details compute it, from the frontend's own queue
# store (the one the overlay renders): pending jobs whose ``priority`` is lower.
JOBS_AHEAD_JS = """() => {
  const pinia = document.querySelector('#vue-app').__vue_app__.config.globalProperties.$pinia;
  const store = [...pinia._s.values()].find((s) => Array.isArray(s.pendingTasks) && 'runningTasks' in s);
  const pending = store.pendingTasks;
  return Object.fromEntries(pending.map((t) => [t.jobId,
    pending.filter((o) => Number(o.job.priority) < Number(t.job.priority)).length]));
}"""


async def _open_editor(launch_chromium, url: str):
    context = await launch_chromium()
    await context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
    page = context.pages[0] if context.pages else await context.new_page()
    await page.goto(url + "/")
    await page.wait_for_function(
        "window.comfyAPI?.api?.api?.clientId && window.restorationGovernor?.setupDone === true", timeout=90_000)
    return page


async def _cancel_from_row(page, prompt_id: str) -> None:
    row = page.locator(f'[data-job-id="{prompt_id}"]')
    await row.hover()
    await row.get_by_role("button", name="Cancel").click()


async def test_the_stock_job_queue_lists_the_governed_queue_cancels_through_it_and_keeps_history(
        _new_frontend_server, launch_chromium):
    server = _new_frontend_server()
    async with ComfyClient(server.url) as c:
        await reset_governor(c)
        (await c.post("/settings", {"Comfy.TutorialCompleted": True})).ok()
        try:
            page = await _open_editor(launch_chromium, server.url)
            blocker = await c.queue_prompt(sleep_prompt(30.0, "blocker", steps=300))
            await wait_job(c, blocker, "running")
            # Queued low, high, normal: the overlay shows newest first, the governor runs high, normal, low.
            low = await c.queue_prompt(sleep_prompt(0.01, "low"), headers={"X-Priority": "low"})
            high = await c.queue_prompt(sleep_prompt(0.01, "high"), headers={"X-Priority": "high"})
            normal = await c.queue_prompt(sleep_prompt(0.01, "normal"))
            timed = await c.queue_prompt(sleep_prompt(0.01, "timed"), headers={"X-Queue-Timeout": "0.3"})
            assert (await wait_job(c, timed, "failed"))["reason"] == "queue_timeout"

            await page.locator('[data-testid="queue-overlay-toggle"]').click()
            for pid in (blocker, low, high, normal, timed):  # the failure left the list readable
                await page.locator(f'[data-job-id="{pid}"]').wait_for(state="attached")
            await page.wait_for_function(f"() => ({JOBS_AHEAD_JS})()['{low}'] !== undefined")
            assert await page.evaluate(JOBS_AHEAD_JS) == {high: 0, normal: 1, low: 2}

            await _cancel_from_row(page, low)  # pending: removed by a governor cancel
            cancelled = await wait_job(c, low, "cancelled")
            assert cancelled["reason"] == "cancelled"
            await _cancel_from_row(page, blocker)  # running: interrupted by a governor cancel, not retried
            stopped = await wait_job(c, blocker, "cancelled")
            assert (stopped["reason"], stopped["attempts"]) == ("cancelled", 1)
            await wait_job(c, normal, "success")
            assert (await job(c, high))["state"] == "success"
            await page.locator(f'[data-job-id="{timed}"]').wait_for(state="attached")
        finally:
            await reset_governor(c)
