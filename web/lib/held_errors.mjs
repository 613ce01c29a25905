// ComfyUI shows an error dialog for every execution_error, including an attempt that failed with
// out-of-memory which the governor is about to run again. The dialog would tell the user that a
// prompt failed when it did not, so execution_error events of a running governed prompt are held
// back until the governor says what happens next (governor.job): dropped when it is retried,
// handed on to ComfyUI's own listeners when the prompt really failed (or nothing is heard in time).
// Used only where the pack's listener provably runs before the dialog's (frontend_features.mjs:
// 1.32); the server already leaves out the errors of attempts it retries, so this is a second guard.

export class HeldErrors {
  /**
   * @param release  (detail) => void: hand the event on to ComfyUI's listeners
   * @param waitMs   longest hold when no governor.job event comes
   */
  constructor(release, waitMs = 3000) {
    this.release = release;
    this.waitMs = waitMs;
    this.held = new Map(); // prompt_id -> {detail, timer}
  }

  /** True when the event was taken (the caller stops it); false to let it through now. */
  take(detail, knownState) {
    if (!detail || !detail.prompt_id) return false;
    if (knownState !== "running" && knownState !== "stuck") return false;
    this.flush(detail.prompt_id); // an older held one goes through first
    const timer = setTimeout(() => this.flush(detail.prompt_id), this.waitMs);
    this.held.set(detail.prompt_id, { detail, timer });
    return true;
  }

  /** The governor's next word on a prompt: a retry drops the held error, anything else releases it. */
  decided(jobEvent) {
    const entry = this.held.get(jobEvent.prompt_id);
    if (!entry) return;
    if (jobEvent.event === "retry") {
      clearTimeout(entry.timer);
      this.held.delete(jobEvent.prompt_id);
    } else if (jobEvent.state !== "running") {
      this.flush(jobEvent.prompt_id);
    }
  }

  flush(promptId) {
    const entry = this.held.get(promptId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.held.delete(promptId);
    this.release(entry.detail);
  }
}
