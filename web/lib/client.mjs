// The governor's HTTP API as the frontend uses it, plus a poller that backs off while it fails.
// Requests go through the frontend's api.fetchApi (adds /api and the Comfy-User header).

import { compareVersions } from "./format.mjs";

/** Oldest governor API this UI understands (GET /governor/status with can_admin and counts). */
export const MIN_API_VERSION = "0.1.0";

/** Availability of the governor API, as the panel reports it. */
export const Availability = Object.freeze({
  UNKNOWN: "unknown",
  OK: "ok",
  MISSING: "missing", // 404: the server has no governor routes (pack missing or too old)
  OLD: "old", // answers, but an older API than MIN_API_VERSION
  UNREACHABLE: "unreachable", // network error or 5xx
});

/** One line out of ComfyUI's error shape {error: {message, details}} (or whatever came back). */
export function errorMessage(status, body) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error === "object") {
    const message = error.message || error.type || `HTTP ${status}`;
    return error.details ? `${message}: ${error.details}` : message;
  }
  if (typeof body === "string" && body.trim()) return `HTTP ${status}: ${body.trim().slice(0, 200)}`;
  return `HTTP ${status}`;
}

export class GovernorClient {
  /** @param {(route: string, init?: object) => Promise<Response>} fetchApi */
  constructor(fetchApi) {
    this.fetchApi = fetchApi;
  }

  async request(method, route, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await this.fetchApi(route, init);
    } catch (e) {
      return { ok: false, status: 0, body: null, message: String((e && e.message) || e) };
    }
    let parsed = null;
    try {
      const text = await response.text();
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    const ok = response.status >= 200 && response.status < 300;
    return { ok, status: response.status, body: parsed, message: ok ? "" : errorMessage(response.status, parsed) };
  }

  status() {
    return this.request("GET", "/governor/status");
  }

  myJobs(clientId, limit = 50) {
    return this.request("GET", `/governor/jobs?client_id=${encodeURIComponent(clientId)}&limit=${limit}`);
  }

  cancel(promptId, clientId) {
    return this.request("POST", `/governor/jobs/${encodeURIComponent(promptId)}/cancel`, { client_id: clientId });
  }

  retry(promptId, clientId) {
    return this.request("POST", `/governor/jobs/${encodeURIComponent(promptId)}/retry`, { client_id: clientId });
  }

  setPriority(promptId, priority, clientId) {
    return this.request("POST", `/governor/jobs/${encodeURIComponent(promptId)}/priority`, {
      priority,
      client_id: clientId,
    });
  }

  setDispatchState(state) {
    const route = { paused: "/governor/pause", draining: "/governor/drain", running: "/governor/resume" }[state];
    return this.request("POST", route);
  }

  config() {
    return this.request("GET", "/governor/config");
  }

  /** Cluster membership (GET /governor/cluster); 404 when the server is not in cluster mode. */
  cluster() {
    return this.request("GET", "/governor/cluster");
  }

  patchConfig(changes) {
    return this.request("PATCH", "/governor/config", changes);
  }
}

/** What a GET /governor/status answer says about the API: {availability, detail}. */
export function judgeStatus(result) {
  if (result.ok) {
    const body = result.body;
    const shaped = body && typeof body === "object" && body.counts && typeof body.can_admin === "boolean";
    if (!shaped || compareVersions(body.version, MIN_API_VERSION) < 0) {
      return { availability: Availability.OLD, detail: String((body && body.version) || "?") };
    }
    return { availability: Availability.OK, detail: "" };
  }
  if (result.status === 404 || result.status === 405) return { availability: Availability.MISSING, detail: `HTTP ${result.status}` };
  return { availability: Availability.UNREACHABLE, detail: result.message || `HTTP ${result.status}` };
}

/**
 * Calls `tick()` every `intervalMs` while started. A tick that returns false counts as a failure
 * and doubles the wait (up to maxMs), so a dead API gets a handful of requests, not a storm.
 */
export class Poller {
  constructor(tick, { intervalMs = 2000, maxMs = 60000 } = {}) {
    this.tick = tick;
    this.intervalMs = intervalMs;
    this.maxMs = maxMs;
    this.failures = 0;
    this.timer = null;
    this.running = false;
    this.inFlight = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Poll now (after a user action), keeping the back-off state. */
  kick() {
    if (this.running && !this.inFlight) this.schedule(0);
  }

  delay() {
    return Math.min(this.maxMs, this.intervalMs * 2 ** this.failures);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), ms);
  }

  async run() {
    if (!this.running) return;
    this.inFlight = true;
    let ok = false;
    try {
      ok = (await this.tick()) !== false;
    } catch {
      ok = false;
    }
    this.inFlight = false;
    this.failures = ok ? 0 : Math.min(this.failures + 1, 16);
    if (this.running) this.schedule(this.delay());
  }
}
