"""Dispatch: the worker asks for the next prompt; the memory gate and a lease decide when it starts.

``dispatch`` blocks ComfyUI's worker thread until the first eligible job (in scheduler order,
retries past their backoff) may start: the dispatch state is ``running`` or ``draining`` (not
``paused``), the
memory gate is open (``memory.evaluate_gate``; a closed gate asks once per wait for models to be
released, and after ``max_gate_wait`` runs or fails the job) and a concurrency slot is free
(``leases``). The started job gets a running ``Attempt``. In cluster mode the head is the shared
queue's next job for this server (``cluster_work.next_job``), through the same gate rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import cluster_work, positions
from .jobs import Job, JobState, Reason
from .leases import Lease
from .memory import MemoryReading, evaluate_gate
from .outcomes import fail_unstarted
from .runtime import PAUSED, Runtime

log = logging.getLogger("restoration_governor.governor")

IDLE_POLL = 5.0  # seconds between checks with nothing queued (also bounds how stale worker_seen gets)
BUSY_POLL = 0.25  # seconds between checks while jobs wait (backoffs, the gate, slots held elsewhere)


@dataclass
class Dispatch:
    """The answer to the worker: a job to run (its lease held), or a request to release models first."""

    job: Job | None = None
    release_models: bool = False


def dispatch(rt: Runtime, timeout: float | None, wake: Callable[[], bool] | None = None) -> Dispatch:
    """Block until a prompt may start (returned with its lease held) or ``timeout`` passes.

    ``wake()`` is checked whenever the condition is notified: when it is true the call returns
    empty at once (ComfyUI's worker must handle ``/free`` flags promptly).
    """
    deadline = None if timeout is None else rt.clock() + timeout
    with rt.cond:
        while True:
            now = rt.clock()
            rt.worker_seen = time.monotonic()
            result = _try_dispatch(rt, now)
            if result is not None:
                return result
            if wake is not None and wake():
                return Dispatch()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                return Dispatch()
            poll = BUSY_POLL if (rt.queue.pending or rt.cluster is not None) else IDLE_POLL
            rt.cond.wait(poll if remaining is None else min(remaining, poll))


def _try_dispatch(rt: Runtime, now: float) -> Dispatch | None:
    if not rt.ready or rt.dispatch_state == PAUSED:  # draining keeps dispatching: it finishes the queue
        return None
    cfg = rt.config
    while True:
        if rt.cluster is not None:  # the shared queue in Redis: the globally next job this server can run
            head = cluster_work.next_job(rt, now)
        else:
            head = rt.queue.scheduler.first(lambda j: j.not_before <= now)
        if head is None:
            return None
        reading = rt.read_memory()
        verdict, why = _memory_gate(rt, head, now, reading)
        if verdict == "release":
            return Dispatch(release_models=True)
        if verdict == "wait":
            return None  # (cluster mode: another server whose gate is open takes the job meanwhile)
        if verdict == "fail":
            if rt.cluster is not None:
                cluster_work.fail_pending(rt, head, Reason.MEMORY_GATE_TIMEOUT, why, now)
            else:
                fail_unstarted(rt, head, Reason.MEMORY_GATE_TIMEOUT, why)
            continue
        if rt.cluster is not None:
            job = cluster_work.take(rt, head, now, reading)
            return None if job is None else Dispatch(job=job)
        lease = rt.leases.try_acquire(cfg.max_concurrent, head.prompt_id)
        if lease is None:
            return None  # every slot is held (here or by another instance): poll again shortly
        _start(rt, head, lease, now, reading)
        return Dispatch(job=head)


def _memory_gate(rt: Runtime, head: Job, now: float, reading: MemoryReading | None) -> tuple[str, str]:
    """The memory gate's rule for the job this server would start next: ``(verdict, why)`` with
    verdict ``open`` (start it), ``release`` (ask ComfyUI to unload its models first, once per
    wait), ``wait``, or ``fail`` (``max_gate_wait`` passed and ``gate_timeout_action`` is ``fail``;
    ``why`` is the job's error message). The wait is per server and per head job; in cluster mode
    the job's shared state stays ``pending``."""
    cfg = rt.config
    gate, previous = rt.queue.gate_wait(head)
    if previous is not None and previous.state is JobState.WAITING_FOR_MEMORY:
        rt.set_state(previous, JobState.PENDING)  # no longer first in line: its wait is over
    decision = evaluate_gate(reading, cfg, rt.stats.peak_bytes(head.fingerprint))
    rt.last_gate = decision
    if decision.open:
        return "open", decision.why
    if gate.since is None:
        gate.since = now
        if rt.cluster is None:
            rt.set_state(head, JobState.WAITING_FOR_MEMORY)
        rt.metrics.gate_waits.inc()
        log.info("prompt %s waits for memory: %s", head.prompt_id, decision.why)
        positions.emit_job(rt, head, why=decision.why)
    if not gate.released_models:
        gate.released_models = True
        rt.metrics.model_releases.labels("memory_gate").inc()
        return "release", decision.why
    if not cfg.max_gate_wait or now - gate.since < cfg.max_gate_wait:
        return "wait", decision.why
    rt.metrics.timeouts.labels("memory_gate").inc()
    if cfg.gate_timeout_action == "fail":
        return "fail", f"waited {now - gate.since:.0f} s for memory: {decision.why}"
    log.warning("prompt %s starts despite the memory gate after %.0f s (%s)", head.prompt_id, now - gate.since,
                decision.why)
    return "open", decision.why


def _start(rt: Runtime, job: Job, lease: Lease, now: float, reading: MemoryReading | None) -> None:
    gate = rt.queue.start(job, lease, reading.used if reading else None)
    if gate is not None and gate.since is not None:
        rt.metrics.gate_wait_seconds.observe(now - gate.since)
    job.attempts += 1
    job.started_at = now
    job.not_before = 0.0
    job.peak_memory = 0
    rt.set_state(job, JobState.RUNNING)
    positions.emit_job(rt, job)
