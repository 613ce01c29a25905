"""The web extension's helper modules, run in Chromium as the server serves them (no graph editor).

Loading them with ``import()`` from the server's own origin also proves that ``web/lib/*.mjs``
come with a JavaScript MIME type (module scripts are refused otherwise) while ComfyUI does not
list them as extensions of their own.
"""

from __future__ import annotations

from harness.client import ComfyClient
from harness.paths import ARTIFACTS_DIR, PACK_FOLDER_NAME

SCREENSHOT_DIR = ARTIFACTS_DIR / "browser"

CHECKS = r"""async (base) => {
  const load = (name) => import(`${base}/lib/${name}.mjs`);
  const [fmt, i18n, book, ind, toasts, held, client, panel, features, slot] = await Promise.all(
    ["format", "i18n", "book", "indicator", "toasts", "held_errors", "client", "panel", "frontend_features",
     "action_bar_slot"].map(load));
  const catalogue = await (await fetch("/api/i18n")).json();
  const failures = [];
  let checked = 0;
  const eq = (name, got, want) => {
    const a = JSON.stringify(got), b = JSON.stringify(want);
    checked += 1;
    if (a !== b) failures.push(`${name}: got ${a}, want ${b}`);
  };
  const en = new i18n.Translator(() => "en").use(catalogue);
  const zh = new i18n.Translator(() => "zh").use(catalogue);
  const zhTW = new i18n.Translator(() => "zh-TW").use(catalogue);
  const t = (k, p) => en.t(k, p);

  // -- wording of times --------------------------------------------------------------------------
  eq("eta soon", fmt.formatEta(3, t), "any moment");
  eq("eta seconds", fmt.formatEta(42, t), "about 45 s");
  eq("eta rounds up into minutes", fmt.formatEta(58, t), "about 1 min");
  eq("eta minutes", fmt.formatEta(150, t), "about 3 min");
  eq("eta hours", fmt.formatEta(3725, t), "about 1 h 2 min");
  eq("eta unknown", fmt.formatEta(null, t), null);
  eq("duration", fmt.formatDuration(125, t), "2 min 5 s");
  eq("bytes", fmt.formatBytes(6.5 * 1024 ** 3), "6.5 GiB");
  eq("versions", [fmt.compareVersions("0.10.0", "0.9.1"), fmt.compareVersions("0.1", "0.1.0")], [1, 0]);
  eq("zh-TW falls back to zh", zhTW.t("panel.mine"), "我的任务");
  eq("missing key shows the key", en.t("no.such.key"), "no.such.key");

  // -- the live line: exactly the issue's wording ------------------------------------------------------
  let now = 1_000_000;
  const b = new book.JobBook(() => now);
  b.admitted("p3", { position: 3, pending: 12, eta_s: 60, priority: "normal", state: "pending" });
  eq("indicator en", ind.headlineText(b.headline(), b, "running", t).text, "Queued — position 3 of 12, about 1 min");
  eq("indicator zh", ind.headlineText(b.headline(), b, "running", (k, p) => zh.t(k, p)).text,
     "排队中 — 第 3 位，共 12 个，约 1 分钟");
  const paused = ind.headlineText(b.headline(), b, "paused", t);
  eq("no ETA while paused", [paused.text, paused.notes], ["Queued — position 3 of 12", "queue paused"]);
  now += 30_000; // the ETA counts down locally between server updates
  eq("eta counts down", Math.round(b.etaNow(b.get("p3"))), 30);

  // events move positions; a late POST /prompt answer does not undo them
  b.queueEvent({ pending: 11, running: 1, jobs: { p3: { position: 2, eta_s: 20, state: "pending" } } });
  b.admitted("p3", { position: 3, pending: 12, eta_s: 60, state: "pending" });
  eq("late answer ignored", [b.get("p3").position, b.pending], [2, 11]);
  b.admitted("p4", { position: 4, pending: 12, eta_s: null, state: "pending" });
  b.jobEvent({ prompt_id: "p1", state: "running", attempt: 1, max_attempts: 3, pending: 11 });
  const head = b.headline();
  eq("headline is the next to run", [head.job.prompt_id, head.queuedMore, head.runningToo], ["p3", 1, 1]);
  eq("order", b.ordered().map((j) => j.prompt_id), ["p1", "p3", "p4"]);
  b.jobEvent({ prompt_id: "p1", state: "success", attempt: 1, max_attempts: 3 });
  eq("finished last", b.ordered().map((j) => j.prompt_id), ["p3", "p4", "p1"]);
  // a listing requested before the last event keeps the newer event's state
  now += 1000;
  const requestedAt = now;
  now += 1;
  b.jobEvent({ prompt_id: "p3", state: "running", attempt: 1, max_attempts: 3 });
  b.replace({ jobs: [{ prompt_id: "p3", state: "pending", position: 1, eta_s: 0 }], total: 1 }, requestedAt);
  eq("listing older than an event", b.get("p3").state, "running");
  eq("queued job the server no longer lists is dropped", b.get("p4"), undefined);

  // -- toasts ------------------------------------------------------------------------------------------
  const retry = toasts.toastForJobEvent({ prompt_id: "abcdef123", event: "retry", state: "pending", attempt: 1,
    max_attempts: 3, retry_in_s: 0.2, failure: "oom", last_error: { message: "CUDA out of memory", exception_type: "OutOfMemoryError" } }, "running", "", t);
  eq("retry toast", [retry.severity, retry.summary], ["warn", "Retrying — attempt 2 of 3 in 1 s"]);
  const timeout = toasts.toastForJobEvent({ prompt_id: "x", event: "state", state: "failed", reason: "queue_timeout",
    attempt: 0, max_attempts: 3, last_error: { message: "Queue timeout: waited 9 s", exception_type: "governor.queue_timeout" } }, "pending", "photo.json", t);
  eq("timeout toast", [timeout.severity, timeout.summary, timeout.detail],
     ["error", "Timed out in the queue", "photo.json — Queue timeout: waited 9 s"]);
  eq("no toast for a repeated running", toasts.toastForJobEvent({ prompt_id: "x", state: "running" }, "running", "", t), null);
  const dedupe = new toasts.ToastDeduper();
  const ev = { prompt_id: "x", event: "state", state: "running", attempt: 1 };
  eq("dedupe", [dedupe.firstTime(ev), dedupe.firstTime(ev), dedupe.firstTime({ ...ev, state: "success" }),
                dedupe.firstTime(ev)], [true, false, true, true]);

  // -- held error dialogs ------------------------------------------------------------------------------
  const released = [];
  const h = new held.HeldErrors((d) => released.push(d.prompt_id), 10_000);
  eq("not held unless running", h.take({ prompt_id: "q" }, "pending"), false);
  eq("held while running", [h.take({ prompt_id: "r1" }, "running"), h.take({ prompt_id: "r2" }, "running")], [true, true]);
  h.decided({ prompt_id: "r1", event: "retry", state: "pending" });
  h.decided({ prompt_id: "r2", event: "state", state: "failed" });
  eq("retry drops, failure releases", released, ["r2"]);

  // -- what differs between frontends -------------------------------------------------------------------
  const api158 = (types) => ({ _registered: new Set(types) });
  eq("1.58: the frontend listens first, nothing is held",
     features.errorHoldVerdict(api158(["status", "execution_error"]), "1.58.1").hold, false);
  eq("first listener may hold", features.errorHoldVerdict(api158(["status"]), "1.58.1").hold, true);
  eq("1.32: dialog bound after extensions", features.errorHoldVerdict({}, "1.32.9").hold, true);
  eq("unknown order: never held", [features.errorHoldVerdict({}, "1.40.0").hold,
                                   features.errorHoldVerdict({}, null).hold], [false, false]);
  eq("i18n workaround only where the bug is", ["1.32.9", "1.33.9", "1.34.0", "1.58.1", null].map(
     (v) => features.dropsPackStrings(v)), [true, true, false, false, true]);
  eq("version", features.frontendVersion({ __COMFYUI_FRONTEND_VERSION__: "1.58.1" }), "1.58.1");

  // -- memory named after what the server gates on (zh: 显存 on a GPU, 内存 on a CPU server) ---------
  zh.setMemorySource("system");
  eq("zh cpu", [zh.t("panel.gate"), zh.t("state.waiting_for_memory")], ["内存检查", "等待内存"]);
  zh.setMemorySource("nvml");
  eq("zh gpu", zh.t("panel.gate"), "显存检查");
  zh.setMemorySource("gpu");
  eq("en unchanged", en.t("panel.gate"), "Memory gate");

  // -- the live line in the frontend's action bar ------------------------------------------------------
  const tab = { id: "t" };
  const reactiveView = { shown: null }; // what a reactive store hands back: another object
  const fakeDoc = { querySelector: () => ({}) };
  const opened = [];
  const registered = [];
  const s = new slot.ActionBarSlot({ tab, onOpen: () => opened.push(1),
    store: () => ({ sidebarTabs: [{ id: "t", restorationGovernorLive: reactiveView }] }),
    registerExtension: (ext) => registered.push(ext), name: "x.live" });
  eq("no action bar on the page: floating line", s.available({ querySelector: () => null }), false);
  eq("attached once", [s.available(fakeDoc), s.available(fakeDoc), registered.length], [true, true, 1]);
  s.set({ text: "Queued — position 1 of 2", tooltip: "Open", kind: "pending" });
  const [button] = registered[0].actionBarButtons;
  eq("button", [button.label, button.class, reactiveView.shown.text],
     ["Queued — position 1 of 2", "rg-actionbar rg-actionbar-pending", "Queued — position 1 of 2"]);
  button.onClick();
  s.set(null);
  eq("cleared, opened", [registered[0].actionBarButtons.length, opened.length], [0, 1]);
  const plain = new slot.ActionBarSlot({ tab: { id: "p" }, onOpen: () => {}, store: () => ({ sidebarTabs: [] }),
    registerExtension: () => {}, name: "y" });
  eq("no reactive store: floating line", plain.available(fakeDoc), false);

  // -- API verdicts and back-off -----------------------------------------------------------------------
  eq("404", client.judgeStatus({ ok: false, status: 404 }).availability, "missing");
  eq("shape", client.judgeStatus({ ok: true, status: 200, body: { version: "0.1.0" } }).availability, "old");
  eq("old version", client.judgeStatus({ ok: true, status: 200, body: { version: "0.0.9", counts: {}, can_admin: false } }).availability, "old");
  eq("current", client.judgeStatus({ ok: true, status: 200, body: { version: "0.1.0", counts: {}, can_admin: true } }).availability, "ok");
  eq("network", client.judgeStatus({ ok: false, status: 0, message: "Failed to fetch" }).availability, "unreachable");
  eq("error text", client.errorMessage(403, { error: { message: "Not your job", details: "only the owner" } }), "Not your job: only the owner");
  const poller = new client.Poller(() => true, { intervalMs: 2000, maxMs: 60000 });
  const delays = [0, 1, 2, 3, 10].map((f) => { poller.failures = f; return poller.delay(); });
  eq("back-off", delays, [2000, 4000, 8000, 16000, 60000]);

  // -- admin form values ---------------------------------------------------------------------------------
  const field = (key) => panel.ADMIN_FIELDS.find((f) => f.key === key);
  eq("percent", [panel.toInput(field("max_used_fraction"), 0.95), panel.fromInput(field("max_used_fraction"), "80")], ["95", 0.8]);
  eq("gib", [panel.toInput(field("min_free_bytes"), 2 * 1024 ** 3), panel.fromInput(field("min_free_bytes"), "1.5")], ["2", 1610612736]);
  eq("not a number", panel.fromInput(field("max_pending"), "lots"), undefined);

  // -- the panel's servers section (GET /governor/cluster) ----------------------------------------------
  const servers = await load("servers");
  const section = new servers.ServersSection(t);
  section.update(null);
  eq("not in cluster mode: no servers section", section.el.hidden, true);
  const cluster = { cluster: "studio", servers: [
    { id: "gpu-a", url: "http://10.0.0.5:8188", gpu: "NVIDIA H200", node_classes_hash: "0123456789abcdef",
      state: "running", heartbeat_age_s: 1.2, running: ["abcdef123456"], slots: { in_use: 1, limit: 2 } },
    { id: "gpu-b", url: "http://10.0.0.6:8188", gpu: "", node_classes_hash: "0123456789abcdef", state: "draining",
      heartbeat_age_s: 3, running: [], slots: 2 },
    { id: "gpu-c", url: "http://10.0.0.7:8188", gpu: "", state: "running", heartbeat_age_s: 14, alive: false,
      running: [], slots: null }] };
  section.update(cluster);
  const rows = [...section.el.querySelectorAll("li.rg-server")];
  eq("servers summary", [section.el.hidden, section.el.querySelector(".rg-hint").textContent],
     [false, "Cluster studio: 2 of 3 servers alive"]);
  eq("server rows", rows.map((r) => [r.dataset.serverId, r.dataset.alive, r.querySelector(".rg-server-state").textContent,
                                     r.querySelector(".rg-server-meta").textContent]), [
    ["gpu-a", "true", "", "GPU NVIDIA H200 · running 1 (abcdef12) · slots 1/2 · heartbeat 1 s ago"],
    ["gpu-b", "true", "Draining", "idle · slots 2 · heartbeat 3 s ago"],
    ["gpu-c", "false", "", "idle · heartbeat 14 s ago"]]);
  const zhSection = new servers.ServersSection((k, p) => zh.t(k, p));
  zhSection.update(cluster);
  eq("servers zh", zhSection.el.querySelector(".rg-hint").textContent, "集群 studio：3 台服务器中 2 台在线");

  // the result as a page, for the screenshot artifact
  document.body.style.cssText = "font: 14px monospace; padding: 16px; white-space: pre-wrap";
  document.body.textContent = `${checked - failures.length} of ${checked} checks passed\n\n${failures.join("\n")}`;
  return failures;
}"""


async def test_web_helper_modules_behave(comfy_server, launch_chromium):
    base = f"{comfy_server.url}/extensions/{PACK_FOLDER_NAME}"
    async with ComfyClient(comfy_server.url) as c:
        listed = (await c.get("/extensions")).ok().body
        assert not [p for p in listed if p.endswith(".mjs")], "helper modules must not load as extensions"
    context = await launch_chromium()
    page = context.pages[0] if context.pages else await context.new_page()
    response = await page.goto(f"{base}/governor.css")  # any page of the server's origin will do
    assert response is not None and response.ok
    failures = await page.evaluate(CHECKS, base)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT_DIR / "test_web_helper_modules_behave-results.png"))
    assert failures == []
