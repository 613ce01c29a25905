// What this browser knows about its own prompts (those queued with the page's client id).
// Fed by the POST /prompt answer, the governor.queue / governor.job WebSocket events and,
// while the panel is open, GET /governor/jobs?client_id=...; the indicator and the panel read it.

import { ACTIVE_STATES, FINAL_STATES, QUEUED_STATES } from "./job_states.mjs";

export { ACTIVE_STATES, FINAL_STATES, QUEUED_STATES };
const KEEP_FINISHED = 20;

const SERVER_FIELDS = [
  "state", "priority", "effective_priority", "attempts", "max_attempts", "reason", "last_error",
  "created_at", "queued_at", "started_at", "finished_at", "exec_seconds", "queue_timeout", "not_before",
];

export class JobBook {
  constructor(now = () => Date.now()) {
    this.now = now;
    this.jobs = new Map();
    this.pending = 0; // prompts waiting in the whole queue (all clients)
    this.running = 0;
    this.listeners = new Set();
    this._notifyQueued = false;
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed() {
    if (this._notifyQueued) return;
    this._notifyQueued = true;
    queueMicrotask(() => {
      this._notifyQueued = false;
      for (const fn of this.listeners) fn(this);
    });
  }

  get(promptId) {
    return this.jobs.get(promptId);
  }

  _job(promptId) {
    let job = this.jobs.get(promptId);
    if (!job) {
      job = { prompt_id: promptId, state: "pending", position: null, eta_s: null, etaAt: 0, seenAt: this.now() };
      this.jobs.set(promptId, job);
    }
    return job;
  }

  _setPosition(job, position, eta, timesOut) {
    job.position = position ?? null;
    job.eta_s = eta ?? null;
    job.times_out_in_s = timesOut ?? null; // set by the server only when the timeout is expected first
    job.etaAt = this.now();
  }

  /** The POST /prompt answer's `governor` block (it may arrive after the first events). */
  admitted(promptId, info, label) {
    const known = this.jobs.has(promptId) && this.jobs.get(promptId).eventAt;
    const job = this._job(promptId);
    if (label) job.label = label;
    if (info.priority) job.priority = info.priority;
    if (!known) {
      job.state = info.state || "pending";
      this._setPosition(job, info.position, info.eta_s, info.times_out_in_s);
      job.attempts = 0;
      if (Number.isFinite(info.pending)) this.pending = info.pending;
    }
    this.changed();
    return job;
  }

  /** governor.queue: {pending, running, jobs: {prompt_id: {position, eta_s, state}}} */
  queueEvent(data) {
    if (!data || typeof data !== "object") return;
    if (Number.isFinite(data.pending)) this.pending = data.pending;
    if (Number.isFinite(data.running)) this.running = data.running;
    for (const [promptId, entry] of Object.entries(data.jobs || {})) {
      const job = this._job(promptId);
      if (FINAL_STATES.has(job.state) || ACTIVE_STATES.has(job.state)) {
        if (!QUEUED_STATES.has(entry.state)) continue;
      }
      job.state = entry.state || job.state;
      this._setPosition(job, entry.position, entry.eta_s, entry.times_out_in_s);
      job.eventAt = this.now();
    }
    this.changed();
  }

  /** governor.job: one state change (or retry / exec_timeout notice) of one of our prompts. */
  jobEvent(data) {
    if (!data || !data.prompt_id) return null;
    const job = this._job(data.prompt_id);
    const previous = job.state;
    job.state = data.state || job.state;
    if (data.priority) job.priority = data.priority;
    if (Number.isFinite(data.attempt)) job.attempts = data.attempt;
    if (Number.isFinite(data.max_attempts)) job.max_attempts = data.max_attempts;
    job.reason = data.reason ?? job.reason ?? null;
    if (data.last_error !== undefined) job.last_error = data.last_error;
    if (data.why) job.why = data.why;
    if (Number.isFinite(data.pending)) this.pending = data.pending;
    if (QUEUED_STATES.has(job.state)) {
      if (data.position !== undefined) {
        const keepEta = job.position === data.position;
        this._setPosition(job, data.position, keepEta ? this.etaNow(job) : null, keepEta ? this.timeoutNow(job) : null);
      }
    } else {
      this._setPosition(job, null, null);
    }
    if (ACTIVE_STATES.has(job.state) && !ACTIVE_STATES.has(previous)) job.started_at = this.now() / 1000;
    if (FINAL_STATES.has(job.state) && !FINAL_STATES.has(previous)) job.finished_at = this.now() / 1000;
    if (QUEUED_STATES.has(job.state)) job.finished_at = null;
    job.eventAt = this.now();
    this._trimFinished();
    this.changed();
    return { job, previous };
  }

  /**
   * GET /governor/jobs for this client: the server's full view. Jobs an event updated after the
   * request left keep their newer state; queued/running jobs the server no longer lists are dropped.
   */
  replace(listing, requestedAt) {
    const seen = new Set();
    for (const server of listing.jobs || []) {
      seen.add(server.prompt_id);
      const job = this._job(server.prompt_id);
      if (job.eventAt && job.eventAt > requestedAt) continue;
      for (const key of SERVER_FIELDS) if (server[key] !== undefined) job[key] = server[key];
      this._setPosition(job, server.position, server.eta_s, server.times_out_in_s);
    }
    const complete = (listing.total ?? 0) <= (listing.jobs || []).length;
    for (const [promptId, job] of this.jobs) {
      if (seen.has(promptId) || (job.eventAt && job.eventAt > requestedAt) || job.seenAt > requestedAt) continue;
      if (complete || !FINAL_STATES.has(job.state)) this.jobs.delete(promptId);
    }
    this._trimFinished();
    this.changed();
  }

  setTotals(pending, running) {
    if (Number.isFinite(pending)) this.pending = pending;
    if (Number.isFinite(running)) this.running = running;
  }

  /** Seconds until start, counted down locally between server updates. */
  etaNow(job) {
    if (job.eta_s === null || job.eta_s === undefined) return null;
    return Math.max(0, job.eta_s - (this.now() - job.etaAt) / 1000);
  }

  /** Seconds until the queue timeout fails this prompt, when that is expected before it starts. */
  timeoutNow(job) {
    if (job.times_out_in_s === null || job.times_out_in_s === undefined) return null;
    return Math.max(0, job.times_out_in_s - (this.now() - job.etaAt) / 1000);
  }

  /** Running first, then waiting in queue order, then the most recently finished. */
  ordered() {
    const rank = (j) => (ACTIVE_STATES.has(j.state) ? 0 : QUEUED_STATES.has(j.state) ? 1 : 2);
    return [...this.jobs.values()].sort((a, b) => {
      const r = rank(a) - rank(b);
      if (r) return r;
      if (rank(a) === 1) return (a.position ?? 1e9) - (b.position ?? 1e9);
      if (rank(a) === 2) return (b.finished_at ?? 0) - (a.finished_at ?? 0);
      return (a.started_at ?? 0) - (b.started_at ?? 0);
    });
  }

  /** What the live indicator shows: the next of our prompts to run, or the one running. */
  headline() {
    const ordered = this.ordered();
    const queued = ordered.filter((j) => QUEUED_STATES.has(j.state));
    const active = ordered.filter((j) => ACTIVE_STATES.has(j.state));
    if (queued.length) return { job: queued[0], kind: queued[0].state, queuedMore: queued.length - 1, runningToo: active.length };
    if (active.length) return { job: active[0], kind: active[0].state, queuedMore: 0, runningToo: active.length - 1 };
    return null;
  }

  _trimFinished() {
    const finished = [...this.jobs.values()]
      .filter((j) => FINAL_STATES.has(j.state))
      .sort((a, b) => (b.finished_at ?? 0) - (a.finished_at ?? 0));
    for (const job of finished.slice(KEEP_FINISHED)) this.jobs.delete(job.prompt_id);
  }
}
