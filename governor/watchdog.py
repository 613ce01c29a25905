"""The watchdog's tick, a few times a second: settings reload, aging, timeouts, stuck jobs, peaks, events.

* settings: ``config.json`` changed on disk (another instance, or a hand edit) is applied live;
* aging: waiting jobs that earned a higher tier are promoted;
* queue timeout: queued jobs past their deadline fail with ``queue_timeout``;
* exec timeout: running attempts past ``exec_timeout`` are interrupted, and marked ``stuck`` when
  they ignore it for ``exec_timeout_grace`` seconds;
* memory peaks of running attempts are sampled (the memory gate learns them per workflow);
* a retry whose backoff ended wakes the worker; position deltas go out (throttled).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import cluster_work, positions
from .admission import timeout_remedy
from .control import apply_config
from .jobs import Job, JobState, Reason
from .outcomes import fail_unstarted
from .queue_state import Attempt
from .runtime import Runtime

log = logging.getLogger("restoration_governor.governor")


def tick(rt: Runtime) -> None:
    """Periodic work: config reload, aging, timeouts, stuck detection, memory peaks, events."""
    with rt.lock:
        now = rt.clock()
        if rt.config_file.changed():
            apply_config(rt, rt.config_file.load())
            log.info("governor settings reloaded from %s", rt.config_file.path)
        cluster_work.maintenance(rt, now)
        promoted = rt.queue.promote_aged(now)
        for job in promoted:
            rt.store.update(job)
        if promoted:
            rt.wake_worker()
        _expire_queued(rt, now)
        _watch_running(rt, now)
        if rt.queue.pending and any(j.not_before and j.not_before <= now for j in _retry_heads(rt)):
            rt.wake_worker()
        positions.broadcast(rt, now)


def _retry_heads(rt: Runtime) -> Iterable[Job]:
    for job in rt.queue.scheduler:
        if job.lane != 0:
            break
        yield job


def _expire_queued(rt: Runtime, now: float) -> None:
    for job in rt.queue.pop_expired(now):
        rt.metrics.timeouts.labels("queue").inc()
        log.warning("prompt %s waited %.0f s and timed out in the queue", job.prompt_id, now - job.queued_at)
        fail_unstarted(rt, job, Reason.QUEUE_TIMEOUT,
                       f"Queue timeout: waited {now - job.queued_at:.0f} s (limit {job.queue_timeout:g} s) and "
                       f"never started. To avoid this, {timeout_remedy(job.priority)}.")


def _watch_running(rt: Runtime, now: float) -> None:
    cfg = rt.config
    for job, attempt in rt.queue.attempts():
        _sample_peak(rt, job, attempt)
        if (cfg.exec_timeout and attempt.interrupt_reason is None and job.started_at is not None
                and now - job.started_at > cfg.exec_timeout):
            attempt.interrupt_reason = Reason.EXEC_TIMEOUT
            attempt.interrupted_at = now
            rt.metrics.timeouts.labels("exec").inc()
            log.warning("prompt %s ran %.0f s, past exec_timeout %g s: interrupting", job.prompt_id,
                        now - job.started_at, cfg.exec_timeout)
            rt.host.interrupt(job.prompt_id)
            positions.emit_job(rt, job, event="exec_timeout")
        if (attempt.interrupted_at is not None and job.state is JobState.RUNNING
                and now - attempt.interrupted_at > cfg.exec_timeout_grace):
            rt.metrics.stuck.inc()
            log.error("prompt %s is STUCK: it did not honour an interrupt within %g s (node still running)",
                      job.prompt_id, cfg.exec_timeout_grace)
            rt.set_state(job, JobState.STUCK)
            positions.emit_job(rt, job)


def _sample_peak(rt: Runtime, job: Job, attempt: Attempt) -> None:
    if attempt.memory_baseline is None:
        return
    reading = rt.read_memory()
    if reading is not None:
        job.peak_memory = max(job.peak_memory or 0, reading.used - attempt.memory_baseline)
