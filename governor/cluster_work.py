"""Cluster mode's side of the verbs: take a job from the shared queue, and the maintenance tick.

``next_job`` and ``take`` replace the local queue's head and start when ``Runtime.cluster`` is set:
``dispatch`` reads the globally next job this server can run (``next_job``), passes it through the
same memory gate as single-server mode (learned peak, ``max_gate_wait``; a closed gate leaves the
job to other servers), then ``take`` leases a GPU slot in Redis and takes that job atomically. The
``maintenance`` tick (from ``watchdog.tick``, at most every ``MAINTENANCE_EVERY`` seconds) sends
the heartbeat, applies the shared dispatch state and settings, interrupts jobs another server
cancelled, rescues the jobs of dead servers (``docs/cluster-design.md``), promotes aged jobs and
reports attempt ends that waited for Redis. Redis errors are logged once per outage and never
raised into the worker or the watchdog: running jobs go on, and report when Redis is back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import positions
from .admission import timeout_remedy
from .cluster_queue import SHARED_SETTINGS, decode, retry_source
from .config import GovernorConfig, apply_patch
from .control import apply_config, set_dispatch_state
from .failures import error_record
from .jobs import Job, JobState, Reason
from .memory import MemoryReading
from .outcomes import history_info
from .runtime import PAUSED, Runtime

log = logging.getLogger("restoration_governor.cluster")

MAINTENANCE_EVERY = 0.5  # seconds between two heartbeats / rescue passes
PROBE_EVERY = 2.0  # while Redis is unreachable: only the maintenance pass tries it, this often


def _redis_error() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def store_upsert(rt: Runtime, job: Job) -> None:
    """This server's own record of a job it runs (its history and ``/governor/jobs`` survive restarts)."""
    if rt.store.get(job.prompt_id) is None:
        rt.store.insert(job)
    else:
        rt.store.update(job)


def next_job(rt: Runtime, now: float) -> Job | None:
    """The job this server would take now (read, not taken: the memory gate looks at it first), or
    None: not registered yet, Redis unreachable (the maintenance pass probes it), paused, or nothing
    pending that this server can run."""
    cluster = rt.cluster
    assert cluster is not None
    if not cluster.classes_key or not cluster.reachable:
        return None
    try:
        q = cluster.rq.peek(cluster.server_id, cluster.classes_key, now)
    except _redis_error() as e:
        _unreachable(rt, e)
        return None
    return None if q is None else decode(q)


def take(rt: Runtime, head: Job, now: float, reading: MemoryReading | None) -> Job | None:
    """Lease a GPU slot and take ``head`` (``next_job``'s answer, its gate passed) if it is still the
    globally next job this server can run; the job starts here. None: no slot, or the queue changed
    meanwhile (the worker asks again)."""
    cluster = rt.cluster
    assert cluster is not None
    lease = job = None
    try:
        lease = rt.leases.try_acquire(rt.config.max_concurrent, "")
        if lease is None:
            return None
        job = cluster.take(now, expect=head.prompt_id)
    except _redis_error() as e:
        _unreachable(rt, e)
    if job is None:
        if lease is not None:
            try:
                rt.leases.release(lease)
            except _redis_error():
                pass  # the slot lapses after its TTL
        return None
    rt.queue.adopt(job, lease, reading.used if reading else None)
    gate = rt.queue.gate
    if gate is not None and gate.prompt_id == job.prompt_id:  # its memory-gate wait here ends
        if gate.since is not None:
            rt.metrics.gate_wait_seconds.observe(now - gate.since)
        rt.queue.gate = None
    job.not_before = 0.0
    job.peak_memory = 0
    job.state = JobState.RUNNING
    store_upsert(rt, job)
    positions.emit_job(rt, job)
    return job


def fail_pending(rt: Runtime, job: Job, reason: Reason, message: str, now: float) -> None:
    """Fail a job of the shared queue that never started here (e.g. ``memory_gate_timeout``): removed
    atomically (nothing happens when another server took or removed it first) and recorded."""
    cluster = rt.cluster
    assert cluster is not None
    try:
        q = cluster.rq.remove(job.prompt_id)
        if q is not None:
            _fail_removed(rt, decode(q), reason, message, now)
    except _redis_error() as e:
        _unreachable(rt, e)


def _fail_removed(rt: Runtime, job: Job, reason: Reason, message: str, now: float) -> None:
    cluster = rt.cluster
    assert cluster is not None
    error = error_record(job.attempts, now, reason, message, exception_type=f"governor.{reason.value}")
    job.errors.append(error)
    job.state, job.reason, job.finished_at = JobState.FAILED, reason, now
    cluster.record_summary(job.prompt_id, job.summary(), retry_source(job))
    rt.host.job_ended_unstarted(job, error, history_info(job))
    rt.host.queue_changed()


def _unreachable(rt: Runtime, error: BaseException) -> None:
    cluster = rt.cluster
    if cluster is not None:
        cluster.failed_at = time.time()
    if cluster is not None and cluster.reachable:
        cluster.reachable = False
        log.warning("Redis is unreachable (%s): admissions answer 503, running jobs go on", error)


def maintenance(rt: Runtime, now: float) -> None:
    """Heartbeat, shared state, cancels, rescue, aging, outbox (called with the lock held)."""
    cluster = rt.cluster
    if cluster is None or now - cluster.last_maintenance < (MAINTENANCE_EVERY if cluster.reachable else PROBE_EVERY):
        return  # (each call may wait for Redis's timeout under the lock: an outage is probed sparingly)
    cluster.last_maintenance = now
    try:
        if not cluster.classes_key and cluster.classes:  # start-up could not register (Redis was down)
            cluster.register(rt.dispatch_state)
        cluster.flush()
        if rt.queue.pending:  # left by single-server mode and not moved at start-up
            move_local_pending(rt)
        beat = cluster.ctx.registry.heartbeat(cluster.server_id, state=rt.dispatch_state,
                                              running=list(rt.queue.running),
                                              slots={"limit": rt.config.max_concurrent,
                                                     "in_use": len(rt.queue.running)})
        if beat.was_dead:
            log.warning("this server was declared dead while it was silent; its jobs may run elsewhere")
        shared = cluster.read_control()
        if shared:
            apply_shared(rt, shared)
        for prompt_id in cluster.cancels_for(list(rt.queue.running)):
            interrupt_local(rt, prompt_id, Reason.CANCELLED)
        if not cluster.reachable:  # every server missed its heartbeats meanwhile: give them time to beat
            cluster.reachable = True
            cluster.rescue_after = now + cluster.ctx.registry.server_timeout
            log.warning("Redis is reachable again")
        if now >= cluster.rescue_after:
            rescue(rt, now)
        if rt.dispatch_state != PAUSED:  # (a pause holds the clocks: expiry and aging wait for the resume)
            expire_queued(rt, now)
        if rt.dispatch_state != PAUSED and cluster.rq.promote_aged(now):
            rt.wake_worker()
    except _redis_error() as e:
        _unreachable(rt, e)


def move_local_pending(rt: Runtime) -> tuple[int, int]:
    """Push the jobs pending in this server's local queue (left from single-server mode) into the
    shared queue and delete them locally; (moved, kept because Redis is unreachable). Logged."""
    cluster = rt.cluster
    assert cluster is not None
    moved = kept = 0
    for job in list(rt.queue.scheduler):
        try:
            if not cluster.seen(job.prompt_id):  # (seen: a shared job this server ran before it stopped)
                cluster.push(job)
                moved += 1
        except Exception:
            kept += 1
            continue
        rt.queue.discard(job)
        rt.store.forget(job.prompt_id)
    if moved or kept:
        log.warning("cluster mode: moved %d pending job(s) from this server's local queue to the shared queue; "
                    "%d could not be moved yet (Redis unreachable), retried every %.1f s", moved, kept,
                    MAINTENANCE_EVERY)
    return moved, kept


def rescue(rt: Runtime, now: float) -> dict[str, Any]:
    """Requeue the running jobs of every server that stopped heartbeating (one rescuer per death)."""
    cluster = rt.cluster
    assert cluster is not None
    running = cluster.rq.running()
    done: dict[str, Any] = {}
    registry = cluster.ctx.registry
    alive = registry.alive_ids() | {cluster.server_id}
    cluster.alive_count = len(alive)
    if not running:
        return done
    for server in set(running.values()) - alive:
        if not registry.declare_dead(server):
            continue
        result = cluster.rq.requeue_running_of(server, now)
        for q in result.exhausted:
            cluster.record_summary(q.prompt_id, {
                "prompt_id": q.prompt_id, "state": JobState.FAILED.value, "reason": Reason.MAX_ATTEMPTS.value,
                "attempts": q.attempt, "max_attempts": q.max_attempts, "finished_at": now, "priority": "normal",
                "errors": [{"message": f"server {server} died while running it, {q.attempt} times"}]})
        log.warning("server %s stopped heartbeating: requeued %s, failed %s", server,
                    [q.prompt_id for q in result.requeued], [q.prompt_id for q in result.exhausted])
        done[server] = result
        rt.wake_worker()
    return done


def expire_queued(rt: Runtime, now: float) -> None:
    """Fail the shared queue's jobs past their queue timeout (the server whose ``expire`` removes
    them does it; nothing expires while the cluster is paused: ``RedisQueue.expire``)."""
    cluster = rt.cluster
    assert cluster is not None
    for q in cluster.rq.expire(now):
        job = decode(q)
        rt.metrics.timeouts.labels("queue").inc()
        message = (f"Queue timeout: waited {now - job.queued_at:.0f} s (limit {job.queue_timeout or 0:g} s) and never "
                   f"started. To avoid this, {timeout_remedy(job.priority)}.")
        _fail_removed(rt, job, Reason.QUEUE_TIMEOUT, message, now)
        log.warning("prompt %s waited %.0f s and timed out in the shared queue", job.prompt_id, now - job.queued_at)


def interrupt_local(rt: Runtime, prompt_id: str, reason: Reason) -> None:
    attempt = rt.queue.attempt(prompt_id)
    if attempt is None:
        return
    attempt.interrupt_reason = reason
    attempt.interrupted_at = rt.clock()
    rt.host.interrupt(prompt_id)


def apply_shared(rt: Runtime, shared: dict[str, Any]) -> None:
    """Apply the cluster's dispatch state and settings published by any server."""
    state = shared.get("state")
    if isinstance(state, str) and state != rt.dispatch_state:
        set_dispatch_state(rt, state, publish=False)
    config = shared.get("config")
    if isinstance(config, dict):
        secret = {"admin_token": rt.config.admin_token}  # never shared through Redis
        new = apply_patch(GovernorConfig(), {k: v for k, v in config.items() if k in SHARED_SETTINGS})
        new = apply_patch(new, secret) if secret["admin_token"] else new
        if new != rt.config:
            rt.config_file.save(new)
            apply_config(rt, new)

