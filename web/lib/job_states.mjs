// Generated from STATE_GROUPS in governor/jobs.py by tests/unit/test_governor_jobs.py: do not edit.
// The groups of job states the governor reports (queued: waiting to start; active: an attempt
// is running; final: finished for good).
export const QUEUED_STATES = new Set(["pending", "waiting_for_memory"]);
export const ACTIVE_STATES = new Set(["running", "stuck"]);
export const FINAL_STATES = new Set(["success", "failed", "cancelled"]);
