// The photos of this browser and their prompts: remembered in localStorage (so a reload
// re-attaches to them), moved forward by the governor's WebSocket events and a slow poll.
import { ApiError, call, callJson } from "./api.mjs";

const STORE_KEY = "restorationUpload.v1";
const UPLOAD_SUBFOLDER = "restoration-upload";
const IMAGE_LOADERS = new Set(["LoadImage", "RestorationLoadImage"]);
export const FINAL = new Set(["success", "failed", "cancelled", "lost"]);
const QUEUED = new Set(["pending", "waiting_for_memory", "stuck"]);

function randomId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Jobs extends EventTarget {
  constructor(storage = localStorage) {
    super();
    this.storage = storage;
    const saved = JSON.parse(storage.getItem(STORE_KEY) || "null") || {};
    this.clientId = saved.clientId || `restoration-page-${randomId()}`;
    this.jobs = saved.jobs || [];
    this.pending = null; // queue length (all clients), from events and answers
    this.workflows = new Map();
    for (const job of this.jobs) {
      if (!job.promptId && !job.uploaded && !FINAL.has(job.state)) job.state = "lost";
    }
    this.save();
  }

  save() {
    this.storage.setItem(STORE_KEY, JSON.stringify({ clientId: this.clientId, jobs: this.jobs }));
    this.dispatchEvent(new Event("change"));
  }

  get(id) { return this.jobs.find((j) => j.id === id); }

  update(job, fields) {
    Object.assign(job, fields);
    this.save();
  }

  waiter(job) {
    return (kind, seconds) => {
      this.update(job, { wait: { kind, until: Date.now() + seconds * 1000 } });
    };
  }

  /** Add a picked file: read, upload, submit. */
  async add(file, mode) {
    const job = { id: randomId(), name: file.name, mode, state: "hashing", added: Date.now() };
    this.jobs.unshift(job);
    this.save();
    try {
      const bytes = await file.arrayBuffer();
      const sha = await sha256Hex(bytes);
      const ext = (file.name.match(/\.([A-Za-z0-9]+)$/) || [, "png"])[1].toLowerCase();
      this.update(job, { sha, state: "uploading", key: `page-${this.clientId}-${sha.slice(0, 40)}-${mode}` });
      const serverName = `${sha.slice(0, 32)}.${ext}`;
      this.update(job, { serverName });
      const form = () => {
        const f = new FormData();
        f.append("image", new Blob([bytes]), serverName);
        f.append("subfolder", UPLOAD_SUBFOLDER);
        f.append("overwrite", "true");
        return f;
      };
      const up = await callJson("/upload/image", { method: "POST", body: form }, this.waiter(job));
      this.update(job, { uploaded: up.subfolder ? `${up.subfolder}/${up.name}` : up.name, wait: null });
      await this.submit(job);
    } catch (e) {
      this.fail(job, e);
    }
  }

  async workflow(mode) {
    if (!this.workflows.has(mode)) {
      this.workflows.set(mode, callJson(`/restoration/workflows/${mode}.json`));
    }
    return structuredClone(await this.workflows.get(mode));
  }

  async submit(job) {
    this.update(job, { state: "submitting" });
    const prompt = await this.workflow(job.mode);
    const loader = Object.values(prompt).find((n) => IMAGE_LOADERS.has(n.class_type));
    loader.inputs.image = job.uploaded;
    const answer = await callJson("/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": job.key, "X-Priority": "normal" },
      body: JSON.stringify({ prompt, client_id: this.clientId }),
    }, this.waiter(job));
    const gov = answer.governor || {};
    if (gov.pending != null) this.pending = gov.pending;
    this.update(job, { promptId: answer.prompt_id, state: gov.state || "pending", position: gov.position,
                       eta: gov.eta_s, wait: null, submitted: Date.now() });
  }

  /** After a reload: send the photos that were uploaded but not yet queued (same key: never twice). */
  resume() {
    for (const job of this.jobs) {
      if (job.uploaded && !job.promptId && !FINAL.has(job.state)) this.submit(job).catch((e) => this.fail(job, e));
    }
  }

  fail(job, error) {
    let message = error instanceof ApiError ? error.message : String(error?.message || error);
    // The server knows the photo under its content-hash name: say the name the person picked.
    if (job.serverName) message = message.split(job.serverName).join(job.name);
    this.update(job, { state: "failed", reason: "error", error: message, wait: null });
  }

  /** Apply a job record (``/governor/jobs`` or a ``governor.job`` event) to our photo. */
  applyRecord(record) {
    const job = this.jobs.find((j) => j.promptId === record.prompt_id);
    if (!job || job.state === "success") return;
    const fields = { state: record.state };
    if ("position" in record) fields.position = record.position;
    if ("eta_s" in record) fields.eta = record.eta_s;
    if (record.pending != null) this.pending = record.pending;
    if (record.state === "failed" || record.state === "cancelled") {
      const last = record.last_error;
      fields.reason = record.reason || record.state;
      fields.error = last && typeof last === "object" ? last.message || "" : last || "";
    }
    if (record.state !== "running") fields.progress = null;
    this.update(job, fields);
    if (record.state === "success") this.fetchResult(job);
  }

  applyQueue(data) {
    if (data.pending != null) this.pending = data.pending;
    for (const [promptId, info] of Object.entries(data.jobs || {})) {
      this.applyRecord({ prompt_id: promptId, ...info });
    }
    this.dispatchEvent(new Event("change"));
  }

  applyProgress(data) {
    const job = this.jobs.find((j) => j.promptId === data.prompt_id);
    if (job && data.max) this.update(job, { state: "running", progress: data.value / data.max });
  }

  async fetchResult(job) {
    if (job.fetching) return;
    job.fetching = true;
    try {
      const history = await callJson(`/history/${job.promptId}`);
      const entry = history[job.promptId];
      const images = Object.entries(entry?.outputs || {}).sort(([a], [b]) => a.localeCompare(b, "en", { numeric: true }))
        .flatMap(([, out]) => out.images || []);
      const result = images.find((i) => i.type === "output") || images[0];
      if (result) this.update(job, { state: "success", result });
      else this.update(job, { state: "failed", reason: "error", error: "no image came back" });
    } catch (e) {
      this.fail(job, e);
    } finally {
      job.fetching = false;
    }
  }

  /** One look at every unfinished photo (``GET /governor/jobs?client_id=``). */
  async poll() {
    const open = this.jobs.filter((j) => j.promptId && !FINAL.has(j.state));
    const stillResolving = this.jobs.filter((j) => j.state === "success" && !j.result && j.promptId);
    for (const job of stillResolving) this.fetchResult(job);
    if (!open.length) return;
    const q = new URLSearchParams({ client_id: this.clientId, limit: "1000" });
    const body = await callJson(`/governor/jobs?${q}`);
    const known = new Map(body.jobs.map((j) => [j.prompt_id, j]));
    for (const job of open) {
      const record = known.get(job.promptId);
      if (record) this.applyRecord(record);
    }
    const status = await callJson("/governor/status").catch(() => null);
    const waiting = status?.counts?.pending ?? status?.pending;
    if (typeof waiting === "number") this.pending = waiting;
  }

  async retry(job) {
    if (!job.promptId) return;
    await call(`/governor/jobs/${job.promptId}/retry`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: this.clientId }),
    });
    this.update(job, { state: "pending", reason: null, error: null, result: null });
  }

  remove(job) {
    if (job.promptId && QUEUED.has(job.state)) {
      call(`/governor/jobs/${job.promptId}/cancel`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ client_id: this.clientId }),
      }).catch(() => {});
    }
    this.jobs = this.jobs.filter((j) => j !== job);
    this.save();
  }

  clearFinished() {
    this.jobs = this.jobs.filter((j) => !FINAL.has(j.state));
    this.save();
  }

  /** Live events over ComfyUI's socket; reconnects by itself. */
  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws?clientId=${encodeURIComponent(this.clientId)}`);
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.type === "governor.queue") this.applyQueue(msg.data || {});
      else if (msg.type === "governor.job") this.applyRecord(msg.data || {});
      else if (msg.type === "progress") this.applyProgress(msg.data || {});
    };
    ws.onclose = () => setTimeout(() => this.connect(), 2000);
  }
}
