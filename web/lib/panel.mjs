// The Governor sidebar tab: this browser's prompts, the governor's state, and admin controls.
// Built once per mount with plain DOM; update() refreshes values in place so that an open
// select or a half-typed setting survives the periodic refresh.

import { ACTIVE_STATES, FINAL_STATES, QUEUED_STATES } from "./book.mjs";
import { h, setChildren, setText } from "./dom.mjs";
import { formatBytes, formatDuration, formatEta, formatPercent, shortId } from "./format.mjs";
import { ServersSection } from "./servers.mjs";

const PRIORITIES = ["high", "normal", "low"];
const GiB = 1024 ** 3;
const UNIT_KEYS = { percent: "admin.unit.percent", gib: "admin.unit.gib", seconds: "admin.unit.seconds" };

/** Settings the admin form edits: key, kind, and how the input maps to the API value. */
export const ADMIN_FIELDS = [
  { key: "memory_gate", kind: "bool" },
  { key: "max_used_fraction", kind: "percent", min: 1, max: 100, step: 1 },
  { key: "min_free_bytes", kind: "gib", min: 0, step: 0.5 },
  { key: "max_concurrent", kind: "int", min: 1, max: 64 },
  { key: "max_pending", kind: "int", min: 0 },
  { key: "max_pending_per_client", kind: "int", min: 0 },
  { key: "queue_timeout", kind: "seconds", min: 0 },
  { key: "exec_timeout", kind: "seconds", min: 0 },
  { key: "retry_attempts", kind: "int", min: 0, max: 20 },
];

export function toInput(field, value) {
  if (field.kind === "bool") return Boolean(value);
  if (value === null || value === undefined) return "";
  if (field.kind === "percent") return String(Math.round(value * 1000) / 10);
  if (field.kind === "gib") return String(Math.round((value / GiB) * 100) / 100);
  return String(value);
}

/** The API value for an input, or undefined when the text is not a number. */
export function fromInput(field, raw) {
  if (field.kind === "bool") return Boolean(raw);
  const text = String(raw).trim();
  if (text === "") return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) return undefined;
  if (field.kind === "percent") return n / 100;
  if (field.kind === "gib") return Math.round(n * GiB);
  if (field.kind === "int") return Math.round(n);
  return n;
}

class JobRow {
  constructor(promptId, panel) {
    this.promptId = promptId;
    this.panel = panel;
    const t = panel.t;
    this.state = h("span", { class: "rg-chip" });
    this.name = h("span", { class: "rg-job-name", title: promptId });
    this.priority = h("select", {
      class: "rg-priority",
      "aria-label": t("panel.priority"),
      onchange: () => panel.actions.setPriority(this.promptId, this.priority.value),
    });
    this.priorityText = h("span", { class: "rg-job-priority" });
    this.position = h("span", { class: "rg-job-position" });
    this.eta = h("span", { class: "rg-job-eta" });
    this.attempts = h("span", { class: "rg-job-attempts" });
    this.error = h("div", { class: "rg-job-error" });
    this.cancel = h("button", {
      class: "rg-button rg-danger",
      dataset: { action: "cancel" },
      onclick: () => panel.actions.cancel(this.promptId),
    });
    this.retry = h("button", {
      class: "rg-button",
      dataset: { action: "retry" },
      onclick: () => panel.actions.retry(this.promptId),
    });
    this.el = h(
      "li",
      { class: "rg-job", dataset: { promptId } },
      h("div", { class: "rg-job-head" }, this.state, this.name, this.priorityText),
      h("div", { class: "rg-job-meta" }, this.position, this.eta, this.attempts),
      this.error,
      h("div", { class: "rg-job-actions" }, this.priority, h("span", { class: "rg-spacer" }), this.cancel, this.retry),
    );
  }

  update(job, view) {
    const { t, book } = this.panel;
    const queued = QUEUED_STATES.has(job.state);
    const active = ACTIVE_STATES.has(job.state);
    const final = FINAL_STATES.has(job.state);
    const busy = view.busy.has(this.promptId);
    this.el.dataset.state = job.state;
    this.state.className = `rg-chip rg-state-${job.state}`;
    setText(this.state, t(`state.${job.state}`));
    setText(this.name, job.label || shortId(job.prompt_id));

    // priority: editable while waiting; high only for admins
    this.priority.hidden = !queued;
    this.priorityText.hidden = queued;
    if (queued) {
      const options = PRIORITIES.map((p) => [p, t(`priority.${p}`), p === "high" && !view.canAdmin]);
      const signature = JSON.stringify(options);
      if (this.priority.dataset.signature !== signature) {
        this.priority.dataset.signature = signature;
        setChildren(this.priority, options.map(([value, label, disabled]) => h("option", { value, disabled }, label)));
        this.priority.title = view.canAdmin ? "" : t("panel.highNeedsAdmin");
      }
      if (document.activeElement !== this.priority) this.priority.value = job.priority || "normal";
      this.priority.disabled = busy;
    } else {
      setText(this.priorityText, job.priority ? t(`priority.${job.priority}`) : "");
    }

    // where it is
    let position = "";
    let eta = "";
    if (queued && job.position) {
      position = t("panel.position", { position: job.position, total: Math.max(book.pending || 0, job.position) });
      eta = job.state === "pending" && view.status?.state !== "paused" ? formatEta(book.etaNow(job), t) || "" : "";
      const timesOut = job.state === "pending" && view.status?.state !== "paused" ? formatEta(book.timeoutNow(job), t) : null;
      if (timesOut) eta = [eta, t("indicator.timesOut", { eta: timesOut })].filter(Boolean).join(" · ");
    } else if (active && job.started_at) {
      position = t("panel.runningFor", { elapsed: formatDuration(Date.now() / 1000 - job.started_at, t) });
    } else if (job.state === "success" && Number.isFinite(job.exec_seconds)) {
      position = t("panel.took", { elapsed: formatDuration(job.exec_seconds, t) });
    } else if (final && job.reason) {
      position = t(`reason.${job.reason}`);
    }
    setText(this.position, position);
    setText(this.eta, eta);
    this.eta.hidden = !eta;
    const attempts = job.max_attempts && job.attempts > 0
      ? t("panel.attempts", { attempt: job.attempts, max: job.max_attempts })
      : "";
    setText(this.attempts, attempts);
    this.attempts.hidden = !attempts;

    // last error (kept visible while a retry waits, hidden after a success)
    const err = job.state !== "success" ? job.last_error : null;
    const prefix = err && err.exception_type && !String(err.exception_type).startsWith("governor.")
      ? `${err.exception_type}: `
      : "";
    const errText = err && err.message ? `${prefix}${String(err.message).split("\n")[0].trim()}` : "";
    setText(this.error, errText ? t("panel.lastError", { error: errText }) : "");
    this.error.hidden = !errText;
    this.error.title = err && err.message ? `${prefix}${err.message}` : "";

    setText(this.cancel, t("panel.cancel"));
    setText(this.retry, t("panel.retry"));
    this.cancel.hidden = !(queued || active);
    this.retry.hidden = !(job.state === "failed" || job.state === "cancelled");
    this.cancel.disabled = busy || job.state === "stuck";
    this.retry.disabled = busy;
  }
}

export class GovernorPanel {
  /**
   * @param t        translate(key, params)
   * @param book     the JobBook of this browser's prompts
   * @param actions  {cancel, retry, setPriority, setDispatchState, applyConfig, refresh}
   */
  constructor({ t, book, actions }) {
    this.t = t;
    this.book = book;
    this.actions = actions;
    this.rows = new Map();
    this.root = null;
    this.adminInputs = null;
    this.adminSignature = "";
  }

  get mounted() {
    return this.root !== null && this.root.isConnected;
  }

  mount(el) {
    this.title = h("h2", { class: "rg-title" });
    this.statePill = h("span", { class: "rg-pill" });
    this.refreshButton = h("button", {
      class: "rg-icon-button pi pi-refresh",
      onclick: () => this.actions.refresh(),
    });
    this.notice = h("div", { class: "rg-notice", role: "alert", hidden: true });
    this.message = h("div", { class: "rg-message", role: "status", hidden: true });

    this.mineTitle = h("h3", {});
    this.mineHint = h("div", { class: "rg-hint" });
    this.mineEmpty = h("div", { class: "rg-empty" });
    this.list = h("ul", { class: "rg-jobs" });

    this.govTitle = h("h3", {});
    this.facts = {};
    const fact = (key) => {
      const label = h("dt", {});
      const value = h("dd", {});
      this.facts[key] = { label, value };
      return [label, value];
    };
    this.memoryBar = h("div", { class: "rg-bar-fill" });
    this.memoryLimit = h("div", { class: "rg-bar-limit" });
    this.memoryText = h("div", { class: "rg-bar-text" });
    this.governorFacts = h(
      "dl",
      { class: "rg-facts" },
      fact("state"),
      fact("memory"),
      fact("gate"),
      fact("concurrency"),
      fact("waiting"),
      fact("running"),
    );
    this.facts.memory.value.append(
      h("div", { class: "rg-bar" }, this.memoryBar, this.memoryLimit),
      this.memoryText,
    );

    this.adminSection = h("section", { class: "rg-section rg-admin", hidden: true });
    this.servers = new ServersSection(this.t);

    this.root = h(
      "div",
      { class: "rg-panel" },
      h("header", { class: "rg-header" }, this.title, this.statePill, this.refreshButton),
      this.notice,
      this.message,
      (this.mineSection = h("section", { class: "rg-section rg-mine" }, this.mineTitle, this.mineHint, this.mineEmpty, this.list)),
      (this.governorSection = h("section", { class: "rg-section rg-governor" }, this.govTitle, this.governorFacts)),
      this.servers.el,
      this.adminSection,
    );
    el.replaceChildren(this.root);
    this.rows.clear();
    this.adminInputs = null;
    this.adminSignature = "";
  }

  unmount() {
    this.root?.remove();
    this.root = null;
    this.rows.clear();
  }

  showMessage(kind, text) {
    if (!this.root) return;
    this.message.hidden = !text;
    this.message.dataset.kind = kind;
    setText(this.message, text);
    clearTimeout(this.messageTimer);
    if (text && kind !== "error") this.messageTimer = setTimeout(() => (this.message.hidden = true), 6000);
  }

  update(view) {
    if (!this.mounted) return;
    const t = this.t;
    setText(this.title, t("tab.title"));
    this.refreshButton.title = t("panel.refresh");
    this.refreshButton.setAttribute("aria-label", t("panel.refresh"));

    const status = view.status;
    const governorState = status?.state || null;
    this.statePill.hidden = !governorState;
    this.statePill.className = `rg-pill rg-gov-${governorState}`;
    setText(this.statePill, governorState ? t(`governor.${governorState}`) : "");

    this.updateNotice(view);
    // Without a (current) governor API there is nothing true to show but the notice.
    const noApi = view.availability === "missing" || view.availability === "old";
    this.mineSection.hidden = noApi;
    this.governorSection.hidden = !status;
    this.updateMine(view);
    this.updateGovernor(view, status);
    this.servers.update(status ? view.cluster : null);
    this.updateAdmin(view, status);
  }

  updateNotice(view) {
    const t = this.t;
    let text = "";
    if (view.availability === "missing") text = t("notice.missing", { detail: view.availabilityDetail });
    else if (view.availability === "old") text = t("notice.old", { version: view.availabilityDetail, min: view.minVersion });
    else if (view.availability === "unreachable") text = t("notice.unreachable", { detail: view.availabilityDetail });
    this.notice.hidden = !text;
    this.notice.dataset.availability = view.availability;
    setText(this.notice, text);
  }

  updateMine(view) {
    const t = this.t;
    setText(this.mineTitle, t("panel.mine"));
    setText(this.mineHint, view.clientId ? t("panel.mineHint", { client: shortId(view.clientId) }) : "");
    const jobs = this.book.ordered();
    this.mineEmpty.hidden = jobs.length > 0;
    setText(this.mineEmpty, t("panel.empty"));
    const wanted = new Set(jobs.map((j) => j.prompt_id));
    for (const [id, row] of this.rows) {
      if (!wanted.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const job of jobs) {
      let row = this.rows.get(job.prompt_id);
      if (!row) {
        row = new JobRow(job.prompt_id, this);
        this.rows.set(job.prompt_id, row);
      }
      row.update(job, view);
      const expectedNext = previous ? previous.nextSibling : this.list.firstChild;
      if (expectedNext !== row.el) this.list.insertBefore(row.el, expectedNext);
      previous = row.el;
    }
  }

  updateGovernor(view, status) {
    const t = this.t;
    setText(this.govTitle, t("panel.governor"));
    const f = this.facts;
    const label = (key, text) => setText(f[key].label, text);
    label("state", t("panel.state"));
    label("gate", t("panel.gate"));
    label("concurrency", t("panel.concurrency"));
    label("waiting", t("panel.waiting"));
    label("running", t("panel.running"));
    this.governorFacts.hidden = !status;
    if (!status) return;

    setText(f.state.value, t(`governor.${status.state}Long`));
    f.state.value.dataset.state = status.state;

    const memory = status.memory;
    const limit = status.config?.max_used_fraction;
    const gpu = memory && memory.source !== "system";
    label("memory", gpu ? t("panel.gpuMemory") : t("panel.ram"));
    if (memory && Number.isFinite(memory.used_fraction)) {
      const fraction = Math.min(1, Math.max(0, memory.used_fraction));
      this.memoryBar.style.width = `${(fraction * 100).toFixed(1)}%`;
      const over = Number.isFinite(limit) && fraction > limit;
      const near = Number.isFinite(limit) && fraction > limit * 0.9;
      this.memoryBar.dataset.level = over ? "over" : near ? "near" : "ok";
      this.memoryLimit.hidden = !Number.isFinite(limit) || !status.config?.memory_gate;
      if (Number.isFinite(limit)) this.memoryLimit.style.left = `${(limit * 100).toFixed(1)}%`;
      setText(
        this.memoryText,
        t(status.config?.memory_gate ? "panel.memoryLine" : "panel.memoryLineNoGate", {
          used: formatBytes(memory.used),
          total: formatBytes(memory.total),
          percent: formatPercent(fraction),
          limit: formatPercent(limit),
          source: t(`source.${memory.source}`),
        }),
      );
    } else {
      this.memoryBar.style.width = "0";
      setText(this.memoryText, t("panel.memoryUnknown"));
    }

    const gate = status.gate;
    let gateText;
    if (!status.config?.memory_gate) gateText = t("panel.gateOff");
    else if (!gate) gateText = t("panel.gateIdle");
    else if (gate.open) gateText = t("panel.gateOpen");
    else gateText = t("panel.gateClosed", { why: gate.why || "" });
    setText(f.gate.value, gateText);
    f.gate.value.dataset.open = gate ? String(Boolean(gate.open)) : "";

    const c = status.concurrency || {};
    setText(f.concurrency.value, t("panel.concurrencyLine", { used: c.in_use ?? 0, limit: c.limit ?? "?" }));
    const byPriority = status.counts?.pending_by_priority || {};
    setText(
      f.waiting.value,
      t("panel.waitingLine", {
        total: status.counts?.pending ?? 0,
        high: byPriority.high || 0,
        normal: byPriority.normal || 0,
        low: byPriority.low || 0,
      }),
    );
    setText(f.running.value, String(status.counts?.running ?? 0));
  }

  updateAdmin(view, status) {
    const t = this.t;
    const show = Boolean(view.canAdmin && status);
    this.adminSection.hidden = !show;
    if (!show) return;
    const config = view.config?.config;
    const docs = Object.fromEntries((view.config?.settings || []).map((s) => [s.name, s]));
    const signature = `${view.locale}|${config ? "c" : "-"}`;
    if (signature !== this.adminSignature) {
      this.adminSignature = signature;
      this.buildAdmin(config, docs);
    }
    for (const [state, button] of Object.entries(this.stateButtons)) {
      button.disabled = status.state === state || view.busy.has("governor");
      button.setAttribute("aria-pressed", String(status.state === state));
    }
    if (config && this.adminInputs) {
      for (const [key, { field, input }] of Object.entries(this.adminInputs)) {
        if (input.dataset.dirty === "1" || document.activeElement === input) continue;
        const value = toInput(field, config[key]);
        if (field.kind === "bool") input.checked = value;
        else input.value = value;
      }
    }
  }

  buildAdmin(config, docs) {
    const t = this.t;
    this.stateButtons = {
      paused: h("button", { class: "rg-button", dataset: { action: "pause" }, onclick: () => this.actions.setDispatchState("paused") }, t("admin.pause")),
      running: h("button", { class: "rg-button", dataset: { action: "resume" }, onclick: () => this.actions.setDispatchState("running") }, t("admin.resume")),
      draining: h("button", { class: "rg-button rg-danger", dataset: { action: "drain" }, onclick: () => this.actions.setDispatchState("draining") }, t("admin.drain")),
    };
    const parts = [
      h("h3", {}, t("admin.title")),
      h("div", { class: "rg-hint" }, t("admin.hint")),
      h("div", { class: "rg-admin-buttons" }, Object.values(this.stateButtons)),
    ];
    this.adminInputs = null;
    if (config) {
      this.adminInputs = {};
      const rows = ADMIN_FIELDS.filter((f) => f.key in config).map((field) => {
        const doc = docs[field.key] || {};
        const input = field.kind === "bool"
          ? h("input", { type: "checkbox", name: field.key })
          : h("input", {
              type: "number",
              name: field.key,
              min: field.min ?? doc.min,
              max: field.max ?? (field.kind === "percent" ? 100 : doc.max),
              step: field.step ?? (field.kind === "int" ? 1 : "any"),
            });
        input.addEventListener("input", () => {
          input.dataset.dirty = "1";
          this.applyButton.disabled = false;
        });
        this.adminInputs[field.key] = { field, input };
        const unit = UNIT_KEYS[field.kind] ? t(UNIT_KEYS[field.kind]) : "";
        return h(
          "label",
          { class: "rg-field", title: t(`admin.help.${field.key}`) },
          h("span", { class: "rg-field-label" }, t(`admin.field.${field.key}`)),
          h("span", { class: "rg-field-input" }, input, h("span", { class: "rg-unit" }, unit)),
        );
      });
      this.applyButton = h("button", { class: "rg-button rg-primary", disabled: true, dataset: { action: "apply" }, onclick: () => this.applyAdmin() }, t("admin.apply"));
      this.adminErrors = h("div", { class: "rg-field-errors", hidden: true });
      parts.push(h("h4", {}, t("admin.settings")), h("div", { class: "rg-form" }, rows), this.adminErrors, this.applyButton);
    }
    setChildren(this.adminSection, parts);
  }

  async applyAdmin() {
    const changes = {};
    const invalid = [];
    for (const [key, { field, input }] of Object.entries(this.adminInputs || {})) {
      if (input.dataset.dirty !== "1") continue;
      const value = fromInput(field, field.kind === "bool" ? input.checked : input.value);
      if (value === undefined) invalid.push(key);
      else changes[key] = value;
    }
    if (invalid.length) {
      this.showFieldErrors(Object.fromEntries(invalid.map((k) => [k, this.t("admin.notANumber")])));
      return;
    }
    if (!Object.keys(changes).length) return;
    this.applyButton.disabled = true;
    const result = await this.actions.applyConfig(changes);
    if (result.ok) {
      for (const { input } of Object.values(this.adminInputs || {})) delete input.dataset.dirty;
      this.showFieldErrors(null);
    } else {
      this.applyButton.disabled = false;
      this.showFieldErrors(result.errors || null, result.message);
    }
  }

  showFieldErrors(errors, message = "") {
    if (!this.adminErrors) return;
    const lines = errors ? Object.entries(errors).map(([k, v]) => `${this.t(`admin.field.${k}`)}: ${v}`) : [];
    if (message && !lines.length) lines.push(message);
    this.adminErrors.hidden = !lines.length;
    setChildren(this.adminErrors, lines.map((line) => h("div", {}, line)));
  }
}
