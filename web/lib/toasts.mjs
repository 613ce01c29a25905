// Which toast a governor.job event deserves (pure: the caller shows it through the frontend).

import { formatDuration, shortId } from "./format.mjs";

const LIFE = { info: 3000, success: 3000, warn: 7000, error: 12000 };

function errorLine(lastError) {
  if (!lastError || !lastError.message) return "";
  const where = lastError.node_type ? ` (${lastError.node_type})` : "";
  const type = lastError.exception_type && !String(lastError.exception_type).startsWith("governor.")
    ? `${lastError.exception_type}${where}: `
    : "";
  // ComfyUI appends tips to some messages (out of memory): the first line says what happened.
  const text = `${type}${String(lastError.message).split("\n")[0].trim()}`;
  return text.length > 300 ? `${text.slice(0, 297)}…` : text;
}

function reasonText(reason, t) {
  return reason ? t(`reason.${reason}`) : "";
}

/**
 * @param data      the governor.job event
 * @param previous  the state this browser knew before the event (or undefined)
 * @param label     a name for the prompt (workflow name or short id)
 * @returns {{severity, summary, detail, life}|null}
 */
export function toastForJobEvent(data, previous, label, t) {
  const name = label || shortId(data.prompt_id);
  const attempt = data.attempt;
  const max = data.max_attempts;
  const make = (severity, summaryKey, detail, params = {}) => ({
    severity,
    summary: t(summaryKey, { name, attempt, max, ...params }),
    detail: [name, detail].filter(Boolean).join(" — "),
    life: LIFE[severity],
  });

  if (data.event === "retry") {
    const wait = Number.isFinite(data.retry_in_s) ? formatDuration(Math.max(1, data.retry_in_s), t) : "";
    return make("warn", "toast.retry", [reasonText(data.failure, t), errorLine(data.last_error)].filter(Boolean).join(": "),
      { next: (attempt || 0) + 1, wait });
  }
  if (data.event === "exec_timeout") return make("warn", "toast.execTimeout", t("toast.execTimeoutDetail"));

  switch (data.state) {
    case "running":
      if (previous === "running") return null;
      return make("info", attempt > 1 ? "toast.startedAttempt" : "toast.started", "");
    case "waiting_for_memory":
      if (previous === "waiting_for_memory") return null;
      return make("warn", "toast.waitingForMemory", data.why || "");
    case "success":
      return make("success", "toast.finished", "");
    case "cancelled":
      return make("info", "toast.cancelled", reasonText(data.reason, t));
    case "stuck":
      return make("error", "toast.stuck", t("toast.stuckDetail"));
    case "failed": {
      const key = {
        queue_timeout: "toast.queueTimeout",
        exec_timeout: "toast.execTimeoutFailed",
        memory_gate_timeout: "toast.memoryGateTimeout",
      }[data.reason] || "toast.failed";
      return make("error", key, errorLine(data.last_error) || reasonText(data.reason, t));
    }
    case "pending":
      // Back in the queue after a retry from the panel (or another tab of the same client).
      if (previous === "failed" || previous === "cancelled") return make("info", "toast.requeued", "");
      return null;
    default:
      return null;
  }
}

/** Drops an event that repeats the previous one of the same prompt (e.g. replayed after a reconnect). */
export class ToastDeduper {
  constructor(limit = 500) {
    this.last = new Map();
    this.limit = limit;
  }

  firstTime(data) {
    const key = [data.event, data.state, data.attempt, data.reason].join("|");
    if (this.last.get(data.prompt_id) === key) return false;
    this.last.delete(data.prompt_id);
    this.last.set(data.prompt_id, key);
    if (this.last.size > this.limit) this.last.delete(this.last.keys().next().value);
    return true;
  }
}
