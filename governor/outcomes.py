"""How an attempt ends: classify its failure, retry it or finalize the job.

``complete`` is called by the worker after every attempt. A failure is classified
(``failures.classify``); a retryable one with attempts left goes back to the head of its tier
after a backoff and writes no history, anything else is final. ``finalize`` is the one place a
job reaches a final state: store, metrics, finished cache, events. ``fail_unstarted`` ends a job
that never ran (queue timeout, memory gate, invalid after restart) and has the host record it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import positions
from .failures import ErrorReport, backoff_delay, classify, error_record, is_retryable
from .jobs import Job, JobState, Reason
from .queue_state import Attempt
from .runtime import Runtime

log = logging.getLogger("restoration_governor.governor")

PRUNE_EVERY = 100  # finished jobs between two store clean-ups


@dataclass
class Completion:
    """What the adapter must do after an attempt ended."""

    write_history: bool  # the outcome is final: record it (False: the attempt will be retried)
    governor_info: dict[str, Any]  # the summary history entries carry (``history_info``)
    free_memory: bool = False  # ask the server to free cached memory before the next attempt (after an OOM)


def complete(rt: Runtime, prompt_id: str, success: bool, report: ErrorReport | None) -> Completion:
    """The attempt of ``prompt_id`` ended; ``report`` says how it failed (ignored on success)."""
    with rt.lock:
        queue = rt.queue
        job = queue.jobs.get(prompt_id)
        attempt = queue.end_attempt(prompt_id) if job is not None else None
        if job is None or attempt is None:
            return Completion(True, {})
        now = rt.clock()
        if attempt.lease is not None:
            rt.leases.release(attempt.lease)
        elapsed = now - (job.started_at or now)
        job.exec_seconds = elapsed  # (peaks were sampled by the watchdog while it ran)
        if success:
            rt.stats.record(job.fingerprint, elapsed, job.peak_memory)
            rt.metrics.exec_seconds.labels("success").observe(elapsed)
            finalize(rt, job, JobState.SUCCESS, None)
            return Completion(True, history_info(job))
        failure = classify(report, rt.config.transient_exceptions)
        if attempt.interrupt_reason is Reason.EXEC_TIMEOUT:
            failure_reason, state = Reason.EXEC_TIMEOUT, JobState.FAILED
        elif attempt.interrupt_reason is Reason.CANCELLED:
            failure_reason, state = Reason.CANCELLED, JobState.CANCELLED
        elif failure.reason is Reason.INTERRUPTED:
            failure_reason, state = Reason.INTERRUPTED, JobState.CANCELLED
        else:
            failure_reason, state = failure.reason, JobState.FAILED
        if state is not JobState.CANCELLED:  # a cancel or an interrupt is not an error
            job.errors.append(failure.record(job.attempts, now, failure_reason))
        if state is JobState.FAILED and (attempt.retry_planned or will_retry(rt, job, attempt, report)):
            rt.metrics.exec_seconds.labels("retried").observe(elapsed)
            _retry(rt, job, failure_reason, now)
            return Completion(False, {}, free_memory=failure_reason is Reason.OOM)
        rt.metrics.exec_seconds.labels(state.value).observe(elapsed)
        finalize(rt, job, state, failure_reason)
        return Completion(True, history_info(job))


def will_retry(rt: Runtime, job: Job, attempt: Attempt, report: ErrorReport | None) -> bool:
    """Whether a failure like ``report`` of this attempt would be retried under the current settings."""
    if attempt.interrupt_reason is not None:
        return False
    failure = classify(report, rt.config.transient_exceptions)
    return (failure.reason in (Reason.OOM, Reason.TRANSIENT, Reason.ERROR)
            and is_retryable(failure, rt.config.retry_node_errors) and job.attempts < job.max_attempts)


def hide_failed_attempt(rt: Runtime, prompt_id: str, report: ErrorReport) -> bool:
    """True when the running attempt of ``prompt_id`` failed as ``report`` says and will be retried.

    The server is about to tell the client the prompt failed; for an attempt the governor retries,
    a plain client would stop waiting (or raise) although the prompt goes on, so the adapter hides
    that signal. The promise is kept: ``complete`` retries it even if settings change meanwhile.
    """
    with rt.lock:
        job = rt.queue.jobs.get(prompt_id)
        attempt = rt.queue.attempt(prompt_id)
        if job is None or attempt is None or not will_retry(rt, job, attempt, report):
            return False
        attempt.retry_planned = True
        return True


def is_requeued(rt: Runtime, prompt_id: str) -> bool:
    """True while ``prompt_id`` waits in the queue (its last attempt ended but the prompt goes on)."""
    with rt.lock:
        job = rt.queue.jobs.get(prompt_id)
        return job is not None and job.state.queued


def _retry(rt: Runtime, job: Job, reason: Reason, now: float) -> None:
    cfg = rt.config
    delay = backoff_delay(job.attempts, cfg.retry_backoff, cfg.retry_backoff_max, cfg.retry_jitter, rt.rng)
    rt.metrics.retries.labels(reason.value).inc()
    job.not_before = now + delay
    job.queued_at = now
    job.started_at = None
    rt.set_state(job, JobState.PENDING, persist=False)
    if rt.cluster is not None:  # back to the head of the shared queue: any server may run the retry
        rt.queue.release_job(job.prompt_id)
        rt.cluster.retried(job, job.not_before, now)
    else:
        rt.queue.enqueue(job, head=True)
    rt.store.update(job)
    log.warning("prompt %s failed with %s (attempt %d/%d); retrying in %.1f s", job.prompt_id, reason.value,
                job.attempts, job.max_attempts, delay)
    positions.emit_job(rt, job, event="retry", retry_in_s=round(delay, 2), failure=reason.value)
    rt.wake_worker()


def history_info(job: Job) -> dict[str, Any]:
    """The governor's summary of a finished job, as history entries carry it under ``governor``."""
    return {"state": job.state.value, "reason": job.reason.value if job.reason else None,
            "attempts": job.attempts, "errors": list(job.errors)}


def finalize(rt: Runtime, job: Job, state: JobState, reason: Reason | None) -> None:
    """``job`` reaches its final ``state``: persisted, counted, cached as finished, its client told."""
    now = rt.clock()
    job.state = state
    job.reason = reason
    job.finished_at = now
    job.not_before = 0.0
    rt.queue.finish(job, keep=rt.config.history_retention)
    if rt.cluster is not None and rt.cluster.attempts.get(job.prompt_id) is not None:
        rt.cluster.finished(job)  # fenced: refused if this server was declared dead meanwhile
    waited_until = job.started_at if job.started_at is not None else now
    rt.metrics.wait_seconds.labels(state.value).observe(max(0.0, waited_until - job.queued_at))
    rt.metrics.finished.labels(state.value, reason.value if reason else "").inc()
    rt.store.update(job)
    job.prompt = {}  # the store keeps it; memory holds summaries only
    job.sensitive = {}
    rt.finished_since_prune += 1
    if rt.finished_since_prune >= PRUNE_EVERY:
        rt.finished_since_prune = 0
        rt.store.prune_finished(rt.config.history_retention)
        rt.store.idempotency_prune(now)
    positions.forget(rt, job.prompt_id)
    positions.emit_job(rt, job)


def fail_unstarted(rt: Runtime, job: Job, reason: Reason, message: str) -> None:
    """End a queued job that never ran (queue timeout, memory gate, invalid after restart)."""
    rt.queue.unqueue(job)
    error = error_record(job.attempts, rt.clock(), reason, message, exception_type=f"governor.{reason.value}")
    job.errors.append(error)
    finalize(rt, job, JobState.FAILED, reason)
    rt.host.job_ended_unstarted(job, error, history_info(job))
    rt.host.queue_changed()
