// Restoration Governor: the queue governor in ComfyUI's frontend.
// * a live line right after queueing ("Queued — position 3 of 12, about 1 min") and toasts when
//   this browser's prompts start, finish, fail, are retried, time out or wait for memory;
// * the Governor sidebar tab: this browser's prompts (cancel, retry, priority), the governor's
//   state, memory and gate, and admin controls when the server says this client may administer;
// * settings (toasts, live line, default priority) and English / Simplified Chinese strings.
// Helpers live in ./lib/*.mjs: ComfyUI imports every *.js under web/ as an extension, not .mjs.

import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";
import { ActionBarSlot } from "./lib/action_bar_slot.mjs";
import { JobBook } from "./lib/book.mjs";
import { Availability, GovernorClient, judgeStatus, MIN_API_VERSION, Poller } from "./lib/client.mjs";
import { dropsPackStrings, errorHoldVerdict, frontendVersion } from "./lib/frontend_features.mjs";
import { FrontendMessages, ownedMessages, packNodeClasses } from "./lib/frontend_i18n.mjs";
import { HeldErrors } from "./lib/held_errors.mjs";
import { Translator } from "./lib/i18n.mjs";
import { LiveIndicator } from "./lib/indicator.mjs";
import { GovernorPanel } from "./lib/panel.mjs";
import { TemplateTexts } from "./lib/template_i18n.mjs";
import { ToastDeduper, toastForJobEvent } from "./lib/toasts.mjs";

const EXTENSION_NAME = "restoration-governor.core";
const TAB_ID = "restoration-governor";
const SETTINGS = {
  toasts: "RestorationGovernor.Toasts",
  indicator: "RestorationGovernor.LiveIndicator",
  priority: "RestorationGovernor.DefaultPriority",
};
const SETTING_PREFIX = "RestorationGovernor_";
const SETTING_CATEGORIES = ["RestorationGovernor", "GovernorNotifications", "GovernorQueue"];
const PANEL_POLL_MS = 2000;
// The pack's folder under custom_nodes/ (this file is served as /extensions/<folder>/governor.js).
const PACK_FOLDER = decodeURIComponent(new URL(".", import.meta.url).pathname.split("/").filter(Boolean).pop() || "");
const I18N_REPAIR_MS = 2000;

function setting(id, fallback) {
  try {
    const value = app.extensionManager?.setting?.get(id);
    return value === undefined || value === null ? fallback : value;
  } catch {
    return fallback; // the setting store is not ready before setup
  }
}

function browserLocale() {
  return (navigator.language || "en").split("-")[0];
}

class GovernorUI {
  constructor() {
    this.translator = new Translator(() => setting("Comfy.Locale", browserLocale()));
    this.t = (key, params) => this.translator.t(key, params);
    this.book = new JobBook();
    this.rawFetchApi = api.fetchApi.bind(api);
    this.client = new GovernorClient((route, init) => this.rawFetchApi(route, init));
    this.availability = Availability.UNKNOWN;
    this.availabilityDetail = "";
    this.status = null;
    this.config = null;
    this.busy = new Set();
    this.dedupe = new ToastDeduper();
    this.warnedHighPriority = false;
    this.syncedClientId = null;
    this.ready = false;
    this.setupDone = false;
    this.panel = new GovernorPanel({
      t: this.t,
      book: this.book,
      actions: {
        cancel: (id) => this.jobAction(id, () => this.client.cancel(id, this.clientId()), "panel.cancelled"),
        retry: (id) => this.jobAction(id, () => this.client.retry(id, this.clientId()), "panel.requeued"),
        setPriority: (id, p) => this.jobAction(id, () => this.client.setPriority(id, p, this.clientId()), "panel.priorityChanged"),
        setDispatchState: (state) => this.setDispatchState(state),
        applyConfig: (changes) => this.applyConfig(changes),
        refresh: () => this.refresh(),
      },
    });
    this.tab = {
      id: TAB_ID,
      icon: "pi pi-gauge",
      title: "restorationGovernor.tab.title",
      tooltip: "restorationGovernor.tab.tooltip",
      type: "custom",
      render: (el) => this.mountPanel(el),
      destroy: () => this.unmountPanel(),
    };
    this.actionBar = new ActionBarSlot({
      tab: this.tab,
      onOpen: () => this.openTab(),
      store: () => app.extensionManager?.sidebarTab,
      registerExtension: (extension) => app.registerExtension(extension),
      name: `${EXTENSION_NAME}.live`,
    });
    this.indicator = new LiveIndicator({
      t: this.t,
      book: this.book,
      onOpen: () => this.openTab(),
      isEnabled: () => this.ready && setting(SETTINGS.indicator, true) !== false,
      governorState: () => this.status?.state ?? null,
      slot: this.actionBar,
    });
    this.poller = new Poller(() => this.pollPanel(), { intervalMs: PANEL_POLL_MS });
    this.releasedErrors = new WeakSet();
    this.heldErrors = new HeldErrors((detail) => {
      this.releasedErrors.add(detail);
      if (typeof api.dispatchCustomEvent === "function") api.dispatchCustomEvent("execution_error", detail);
      else api.dispatchEvent(new CustomEvent("execution_error", { detail }));
    });
    this.book.onChange(() => this.render());
  }

  clientId() {
    return api.clientId ?? api.initialClientId ?? null;
  }

  // -- lifecycle ---------------------------------------------------------------------------------
  async setup() {
    loadStylesheet();
    this.registerTab();
    this.indicator.mount(document.body);
    await this.prepareLocale();
    this.ready = true;
    await this.probe();
    await this.syncJobs();
    this.setupDone = true;
    this.render();
  }

  /**
   * The pack's strings (GET /i18n). On frontends that drop the packs' strings of a non-English
   * locale (1.32), they are put back before the frontend translates the node definitions (the
   * extension's init hook runs just before it registers the nodes) and whenever they go missing.
   */
  async prepareLocale() {
    if (this.localePrepared) return this.localePrepared;
    this.localePrepared = (async () => {
      let catalogue = {};
      try {
        catalogue = await api.getCustomNodesI18n();
      } catch {
        catalogue = {}; // no strings: keys show, everything else works
      }
      this.translator.use(catalogue);
      this.templateTexts = new TemplateTexts(catalogue);
      if (!dropsPackStrings(frontendVersion())) return;
      let nodeClasses = [];
      try {
        nodeClasses = packNodeClasses(await api.getNodeDefs(), PACK_FOLDER);
      } catch {
        nodeClasses = []; // the nodes keep the frontend's own (English) names
      }
      const owned = ownedMessages(catalogue, SETTING_PREFIX, SETTING_CATEGORIES, nodeClasses);
      this.frontendMessages = new FrontendMessages(owned);
      this.frontendMessages.repair();
      setInterval(() => this.frontendMessages.repair(), I18N_REPAIR_MS); // the frontend may replace them later
    })();
    return this.localePrepared;
  }

  /** The pack's templates in the editor's language, rewritten in the workflow JSON before it is loaded. */
  localizeTemplate(graphData) {
    try {
      this.templateTexts?.localize(graphData, this.translator.chain());
    } catch (error) {
      console.warn("restorationGovernor: template texts left as they are", error);
    }
  }

  registerTab() {
    const tab = this.tab;
    const manager = app.extensionManager;
    if (manager.sidebarTab?.registerSidebarTab) manager.sidebarTab.registerSidebarTab(tab);
    else manager.registerSidebarTab(tab);
  }

  mountPanel(el) {
    if (this.panel.mounted && this.panel.root.parentElement === el) return;
    this.polls = 0;
    this.clusterMissing = false;
    this.panel.mount(el);
    this.render();
    this.poller.start();
  }

  unmountPanel() {
    this.poller.stop();
    this.panel.unmount();
  }

  openTab() {
    const manager = app.extensionManager;
    if (manager.sidebarTab?.activeSidebarTabId === TAB_ID) return;
    manager.command.execute(`Workspace.ToggleSidebarTab.${TAB_ID}`);
  }

  render() {
    this.indicator.render();
    if (!this.panel.mounted || !this.ready) return;
    this.panel.update({
      availability: this.availability,
      availabilityDetail: this.availabilityDetail,
      minVersion: MIN_API_VERSION,
      status: this.availability === Availability.OK ? this.status : null,
      config: this.config,
      cluster: this.cluster,
      canAdmin: Boolean(this.status?.can_admin) && this.availability === Availability.OK,
      clientId: this.clientId(),
      busy: this.busy,
      locale: this.translator.locale(),
    });
  }

  // -- talking to the governor ---------------------------------------------------------------------
  async probe() {
    const result = await this.client.status();
    const verdict = judgeStatus(result);
    this.availability = verdict.availability;
    this.availabilityDetail = verdict.detail;
    if (verdict.availability === Availability.OK) {
      this.status = result.body;
      this.translator.setMemorySource(result.body.memory?.source);
      this.book.setTotals(result.body.counts.pending, result.body.counts.running);
    }
    return verdict.availability === Availability.OK;
  }

  async syncJobs() {
    const clientId = this.clientId();
    if (!clientId || this.availability !== Availability.OK) return false;
    const requestedAt = Date.now();
    const result = await this.client.myJobs(clientId);
    if (!result.ok) return false;
    this.syncedClientId = clientId;
    this.book.replace(result.body, requestedAt);
    return true;
  }

  async loadConfig() {
    const result = await this.client.config();
    if (result.ok) this.config = result.body;
  }

  /** The cluster's servers for the panel. Not in cluster mode (`enabled: false`, or 404 from an older
   *  pack): no more asking until the tab is opened again or refreshed. */
  async syncCluster() {
    if (this.clusterMissing) return;
    const result = await this.client.cluster();
    if (result.status === 404 || result.status === 405 || (result.ok && result.body?.enabled === false)) {
      this.clusterMissing = true;
    }
    this.cluster = result.ok && Array.isArray(result.body?.servers) ? result.body : null;
  }

  async pollPanel() {
    const ok = await this.probe();
    this.polls = (this.polls || 0) + 1;
    if (ok) {
      // Events keep the list current; the listing every other poll adds what events do not carry.
      if (this.polls % 2 === 1) await this.syncJobs();
      if (this.polls % 2 === 1) await this.syncCluster();
      if (this.status.can_admin && !this.config) await this.loadConfig();
    }
    this.render();
    return ok;
  }

  async refresh() {
    this.config = null;
    this.clusterMissing = false;
    this.polls = 0;
    await this.pollPanel();
  }

  async jobAction(promptId, call, doneKey) {
    this.busy.add(promptId);
    this.render();
    try {
      const result = await call();
      if (result.ok) {
        this.book.jobEvent({ ...result.body, attempt: result.body.attempts });
        this.panel.showMessage("info", this.t(doneKey, { name: this.book.get(promptId)?.label || promptId.slice(0, 8) }));
      } else {
        this.panel.showMessage("error", this.t("panel.actionFailed", { error: result.message }));
        this.notify("error", this.t("panel.actionFailedSummary"), result.message);
      }
    } finally {
      this.busy.delete(promptId);
      await this.syncJobs();
      this.render();
    }
  }

  async setDispatchState(state) {
    this.busy.add("governor");
    this.render();
    try {
      const result = await this.client.setDispatchState(state);
      if (result.ok) {
        if (this.status) this.status.state = result.body.state;
        this.panel.showMessage("info", this.t(`admin.now_${result.body.state}`));
      } else {
        this.panel.showMessage("error", this.t("panel.actionFailed", { error: result.message }));
      }
    } finally {
      this.busy.delete("governor");
      await this.probe();
      this.render();
    }
  }

  async applyConfig(changes) {
    const result = await this.client.patchConfig(changes);
    if (result.ok) {
      this.config = { ...(this.config || {}), config: result.body.config };
      this.panel.showMessage("info", this.t("admin.saved"));
      await this.probe();
      this.render();
      return { ok: true };
    }
    const errors = result.body?.error?.extra_info?.errors || null;
    return { ok: false, message: result.message, errors };
  }

  // -- WebSocket events ------------------------------------------------------------------------------
  markAlive() {
    if (this.availability !== Availability.OK && this.availability !== Availability.OLD) {
      this.availability = Availability.OK;
      this.availabilityDetail = "";
      if (this.panel.mounted) this.poller.kick();
    }
  }

  onQueueEvent(detail) {
    this.markAlive();
    this.book.queueEvent(detail);
  }

  /** ComfyUI's execution_error: held back while the governor may still retry the prompt. */
  onExecutionError(event) {
    const detail = event.detail;
    if (this.releasedErrors.has(detail)) {
      this.releasedErrors.delete(detail);
      return;
    }
    if (this.heldErrors.take(detail, this.book.get(detail?.prompt_id)?.state)) event.stopImmediatePropagation();
  }

  onJobEvent(detail) {
    this.markAlive();
    this.heldErrors.decided(detail || {});
    const change = this.book.jobEvent(detail);
    if (!change || !this.dedupe.firstTime(detail)) return;
    if (setting(SETTINGS.toasts, true) !== false && this.ready) {
      const toast = toastForJobEvent(detail, change.previous, change.job.label, this.t);
      if (toast) this.notify(toast.severity, toast.summary, toast.detail, toast.life);
    }
  }

  onGovernorStatus(detail) {
    if (!detail?.state) return;
    const before = this.status?.state;
    if (this.status) this.status.state = detail.state;
    const mine = this.book.headline();
    if (before && before !== detail.state && mine && setting(SETTINGS.toasts, true) !== false) {
      this.notify(detail.state === "running" ? "info" : "warn", this.t(`toast.governor_${detail.state}`), "");
    }
    this.render();
  }

  onSocketStatus() {
    // The first `status` message carries the page's client id; list what this client already has.
    const id = this.clientId();
    if (this.ready && id && id !== this.syncedClientId) void this.syncJobs();
  }

  async onReconnected() {
    if (await this.probe()) await this.syncJobs();
    this.render();
  }

  // -- the graph editor's own queue requests ------------------------------------------------------------
  /** The priority to add to a prompt this page queues, or null to leave the request alone. */
  priorityForNewPrompt() {
    const wanted = setting(SETTINGS.priority, "normal");
    if (wanted !== "high" && wanted !== "low") return null;
    if (wanted === "high" && this.status?.can_admin !== true) {
      if (!this.warnedHighPriority) {
        this.warnedHighPriority = true;
        this.notify("warn", this.t("toast.highNeedsAdmin"), this.t("toast.highNeedsAdminDetail"));
      }
      return null;
    }
    return wanted;
  }

  onAdmitted(answer) {
    if (!answer || !answer.prompt_id || !answer.governor) return;
    let label = "";
    try {
      label = app.extensionManager?.workflow?.activeWorkflow?.filename || "";
    } catch {
      label = "";
    }
    this.markAlive();
    this.book.admitted(answer.prompt_id, answer.governor, label);
    for (const note of answer.governor.notes || []) this.notify("warn", this.t("toast.queuedWithNote"), note);
  }

  notify(severity, summary, detail, life) {
    const toast = app.extensionManager?.toast;
    if (!toast) return;
    toast.add({ severity, summary, detail: detail || undefined, life: life ?? (severity === "error" ? 12000 : 5000) });
  }
}

function loadStylesheet() {
  const href = new URL("./governor.css", import.meta.url).href;
  if (document.querySelector(`link[href="${href}"]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  document.head.append(link);
}

/** Adds the default priority to POST /prompt and reads the governor's answer (position, ETA). */
function hookPromptRequests(ui) {
  const original = ui.rawFetchApi;
  api.fetchApi = async (route, init = {}) => {
    const isQueue = route === "/prompt" && String(init.method || "GET").toUpperCase() === "POST";
    if (!isQueue || typeof init.body !== "string") return original(route, init);
    let request = init;
    try {
      const body = JSON.parse(init.body);
      const priority = ui.priorityForNewPrompt();
      const given = body?.extra_data?.governor?.priority;
      // "Queue front" is its own request for priority: the default setting does not override it.
      if (priority && body && typeof body === "object" && !given && !body.front) {
        body.extra_data = { ...(body.extra_data || {}) };
        body.extra_data.governor = { ...(body.extra_data.governor || {}), priority };
        request = { ...init, body: JSON.stringify(body) };
      }
    } catch {
      request = init; // not JSON: not ours to touch
    }
    const response = await original(route, request);
    if (response.ok) {
      response
        .clone()
        .json()
        .then((answer) => ui.onAdmitted(answer))
        .catch(() => {});
    }
    return response;
  };
}

const ui = new GovernorUI();
window.restorationGovernor = ui; // for debugging from the browser console

// Decided before the pack adds a listener of its own (the verdict reads who listens already).
ui.errorHold = errorHoldVerdict(api, frontendVersion());
// Custom WebSocket events are only dispatched to listeners registered for their exact type;
// registering here (module load) is before the frontend opens its socket.
api.addEventListener("governor.queue", (e) => ui.onQueueEvent(e.detail));
// Where the pack's listener runs before the one that shows the error (1.32), a retried attempt's
// error can be held back; elsewhere (1.58) the server's hiding of retried attempts is all there is.
if (ui.errorHold.hold) api.addEventListener("execution_error", (e) => ui.onExecutionError(e));
api.addEventListener("governor.job", (e) => ui.onJobEvent(e.detail));
api.addEventListener("governor.status", (e) => ui.onGovernorStatus(e.detail));
api.addEventListener("status", () => ui.onSocketStatus());
api.addEventListener("reconnected", () => void ui.onReconnected());
hookPromptRequests(ui);

app.registerExtension({
  name: EXTENSION_NAME,
  settings: [
    {
      id: SETTINGS.toasts,
      category: ["RestorationGovernor", "GovernorNotifications", "Toasts"],
      name: "Toasts when my prompts start, finish, fail, are retried or wait",
      type: "boolean",
      defaultValue: true,
    },
    {
      id: SETTINGS.indicator,
      category: ["RestorationGovernor", "GovernorNotifications", "LiveIndicator"],
      name: "Show my queue position while a prompt waits",
      type: "boolean",
      defaultValue: true,
      onChange: () => ui.render(),
    },
    {
      id: SETTINGS.priority,
      category: ["RestorationGovernor", "GovernorQueue", "DefaultPriority"],
      name: "Priority of the prompts I queue",
      tooltip: "High needs the governor's admin rights (this machine, or the admin token); without them prompts are queued as normal.",
      type: "combo",
      options: ["normal", "low", "high"],
      defaultValue: "normal",
    },
  ],
  async init() {
    // Awaited: on 1.32 the node names must be back in the frontend's messages before it registers
    // the nodes. Only GET /i18n (and on 1.32 GET /object_info) is waited for, never the governor API.
    await ui.prepareLocale();
  },
  beforeConfigureGraph(graphData) {
    ui.localizeTemplate(graphData); // the graph's JSON (a copy), before the editor builds it
  },
  setup() {
    // Not awaited: the graph editor must not wait for the governor API (it may be slow or absent).
    void ui.setup();
  },
});
