"""Control verbs: cancel, change priority, retry a finished job, pause / drain / resume, settings.

Each verb acting on one job checks access first (``auth.require_job_access``: its owner by
``client_id``, or an admin). The dispatch state is persisted (``kv`` ``dispatch_state``) so a
paused or draining server stays so across a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from . import positions
from .auth import require_job_access, require_priority_right
from .cluster_queue import decode, retry_source, shared_config, unavailable
from .config import ConfigError, GovernorConfig, apply_patch
from .errors import bad_request, conflict, not_found
from .jobs import Job, JobState, Priority, Reason
from .outcomes import finalize
from .runtime import PAUSED, Runtime

log = logging.getLogger("restoration_governor.governor")


def find(rt: Runtime, prompt_id: str) -> Job:
    """The job, live or finished (from the store when it left the finished cache); 404 if unknown."""
    with rt.lock:
        job = rt.queue.find(prompt_id) or rt.store.get(prompt_id)
        if rt.cluster is not None:  # the shared record is the truth (a fenced-off local end is not)
            job = _cluster_find(rt, prompt_id, job)
        if job is None:
            raise not_found("job", prompt_id)
        return job


def _cluster_find(rt: Runtime, prompt_id: str, local: Job | None) -> Job | None:
    """The cluster's record of a job (this server's own while it runs here; the local one, if any,
    while Redis is unreachable)."""
    assert rt.cluster is not None
    if prompt_id in rt.queue.running:
        return rt.queue.jobs[prompt_id]
    try:
        shared = rt.cluster.lookup(prompt_id)
    except Exception as e:
        if local is not None:
            return local
        raise unavailable(e) from None
    if shared is not None and local is not None and shared.state.final and local.state.final \
            and (shared.state, shared.attempts, shared.finished_at) == (local.state, local.attempts, local.finished_at):
        return local  # the same end, recorded here: its record is complete (the prompt body, for a retry)
    return shared or local  # a local record never overrides the shared one


def _cluster_cancel(rt: Runtime, job: Job) -> None:
    """Cancel a job of the shared queue that does not run here: removed if still pending, else its
    server is asked to interrupt it (it records the cancel when the attempt ends)."""
    assert rt.cluster is not None
    try:
        removed = rt.cluster.rq.remove(job.prompt_id)
        if removed is None:
            rt.cluster.request_cancel(job.prompt_id)
            return
        job.state, job.reason, job.finished_at = JobState.CANCELLED, Reason.CANCELLED, rt.clock()
        rt.cluster.record_summary(job.prompt_id, job.summary(), retry_source(job))
    except Exception as e:
        raise unavailable(e) from None
    positions.emit_job(rt, job)
    rt.host.queue_changed()


def cancel(rt: Runtime, prompt_id: str, *, client_id: str | None = None, admin: bool = True) -> Job:
    """Queued: removed and ``cancelled``. Running: interrupted (``complete`` then records it cancelled)."""
    with rt.lock:
        job = find(rt, prompt_id)
        require_job_access(job.client_id, client_id, admin)
        if rt.cluster is not None and prompt_id not in rt.queue.running and not job.state.final:
            _cluster_cancel(rt, job)
        elif job.state.queued:
            rt.queue.unqueue(job)  # no error record: a cancel is not an error (``reason`` says cancelled)
            finalize(rt, job, JobState.CANCELLED, Reason.CANCELLED)
            rt.host.queue_changed()
        elif job.state.active:
            attempt = rt.queue.attempt(prompt_id)
            if attempt is not None:
                attempt.interrupt_reason = Reason.CANCELLED
                attempt.interrupted_at = rt.clock()
            rt.host.interrupt(prompt_id)
        else:
            raise conflict("job_finished", "Job already finished", f"{prompt_id} is {job.state.value}")
        return job


def cancel_all_queued(rt: Runtime) -> int:
    """Cancel every queued job (ComfyUI's queue clear); returns how many."""
    with rt.lock:
        jobs = list(rt.queue.scheduler)
        if rt.cluster is not None:
            try:
                jobs = [decode(q) for q in rt.cluster.rq.page(0, 100000)]
            except Exception as e:
                raise unavailable(e) from None
        for job in jobs:
            cancel(rt, job.prompt_id)
        return len(jobs)


def set_priority(rt: Runtime, prompt_id: str, priority: Priority, *, client_id: str | None, admin: bool) -> Job:
    """Move a queued job to another tier, as a new arrival there; 409 once it started."""
    with rt.lock:
        job = find(rt, prompt_id)
        require_job_access(job.client_id, client_id, admin)
        require_priority_right(priority, admin)
        if not job.state.queued:
            raise conflict("job_not_queued", "Only a waiting job can change priority",
                           f"{prompt_id} is {job.state.value}")
        job.priority = priority
        if rt.cluster is not None:
            try:
                rt.cluster.rq.requeue(prompt_id, int(priority), priority=int(priority))
            except Exception as e:
                raise unavailable(e) from None
        else:
            rt.queue.change_tier(job, int(priority))
            rt.store.update(job)
        positions.emit_job(rt, job)
        rt.host.queue_changed()
        rt.wake_worker()
        return job


def retry(rt: Runtime, prompt_id: str, *, client_id: str | None, admin: bool) -> Job:
    """Put a failed or cancelled job back in the queue (a fresh set of attempts, same prompt_id)."""
    with rt.lock:
        job = find(rt, prompt_id)
        require_job_access(job.client_id, client_id, admin)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise conflict("job_not_retryable", "Only a failed or cancelled job can be retried",
                           f"{prompt_id} is {job.state.value}")
        full = rt.store.get(prompt_id)
        if rt.cluster is not None and (full is None or not full.prompt):
            full = _cluster_retry_source(rt, prompt_id)
        if full is None or not full.prompt:
            raise conflict("job_not_retryable", "The job's prompt is no longer stored", prompt_id)
        rt.queue.reopen(prompt_id)
        full.state = JobState.PENDING
        full.reason = None
        full.attempts = 0
        full.max_attempts = rt.config.retry_attempts + 1
        full.queued_at = rt.clock()
        full.started_at = full.finished_at = None
        full.not_before = 0.0
        full.tier = int(full.priority)
        if rt.cluster is not None:
            try:
                rt.cluster.redis.delete(rt.cluster.key("where:" + prompt_id))
                rt.cluster.push(full)
            except Exception as e:
                raise unavailable(e) from None
        else:
            rt.queue.enqueue(full)
            rt.store.update(full)
        rt.host.delete_history(prompt_id)
        positions.emit_job(rt, full)
        rt.host.queue_changed()
        rt.wake_worker()
        return full


def _cluster_retry_source(rt: Runtime, prompt_id: str) -> Job | None:
    assert rt.cluster is not None
    try:
        return rt.cluster.retry_source(prompt_id)
    except Exception as e:
        raise unavailable(e) from None


def set_dispatch_state(rt: Runtime, state: str, *, publish: bool = True) -> None:
    """``running``, ``paused`` or ``draining``: persisted, broadcast as ``governor.status``.

    Paused holds every queued job and stops its queue-timeout clock; leaving ``paused`` restarts
    the clock with the time each job had left. Draining dispatches like running (the queue is
    finished) while admission refuses new prompts. In cluster mode the state is the cluster's:
    published in Redis (``publish``), every server applies it within a tick.
    """
    with rt.lock:
        if rt.cluster is not None and publish:
            try:
                rt.cluster.publish_control(state=state)
            except Exception as e:
                raise unavailable(e) from None
        now = rt.clock()
        if state == PAUSED:
            rt.queue.hold(now)
        else:
            rt.queue.release(now)
        rt.dispatch_state = state
        rt.store.kv_set("dispatch_state", state)
        log.info("governor is now %s", state)
        rt.host.send("governor.status", {"state": state}, None)
        positions.invalidate(rt)
        positions.broadcast(rt, now, force=True)  # ETAs appear or vanish with the state
        rt.wake_worker()


def update_config(rt: Runtime, patch: Any) -> GovernorConfig:
    """Validate ``patch`` (400 naming each bad key), save it and apply it live."""
    with rt.lock:
        try:
            new = apply_patch(rt.config, patch)
        except ConfigError as e:
            raise bad_request("invalid_config", "Invalid governor settings", str(e), errors=e.errors) from None
        if rt.cluster is not None:
            try:
                rt.cluster.publish_control(config=shared_config(new))
            except Exception as e:
                raise unavailable(e) from None
        rt.config_file.save(new)
        apply_config(rt, new)
        return new


def apply_config(rt: Runtime, new: GovernorConfig) -> None:
    rt.config = new
    rt.queue.set_aging_interval(new.aging_interval)
    if rt.cluster is not None:
        rt.cluster.rq.aging_interval = new.aging_interval
    rt.wake_worker()
