"""Read-only views of the governor: one job, job lists, status, health and the metrics snapshot.

Everything here reads under the lock and changes nothing (except the memory reading that
``status`` takes when no dispatch has read one yet).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from . import __version__, cluster_listing, positions
from .cluster_context import ClusterContext
from .cluster_queue import decode
from .jobs import Job, JobState
from .runtime import Runtime

WORKER_SILENCE_LIMIT = 30.0  # seconds without a dispatch poll (and nothing running) before health fails
SUMMARY_KEYS = ("max_pending", "max_pending_per_client", "max_concurrent", "queue_timeout", "exec_timeout",
                "retry_attempts", "memory_gate", "max_used_fraction", "min_free_bytes", "aging_interval",
                "admin_token_set")  # the settings /governor/status shows


@dataclass(frozen=True)
class Viewer:
    """Who reads a view: ``everything`` (an admin, or no admin token set), else only the jobs of
    ``client_id`` in full and the others as position and state."""

    client_id: str | None = None
    everything: bool = True

    def may_see(self, job: Job) -> bool:
        return self.everything or (self.client_id is not None and job.client_id == self.client_id)


EVERYONE = Viewer()


def job_view(rt: Runtime, job: Job, viewer: Viewer = EVERYONE) -> dict[str, Any]:
    """``job.summary()`` plus its ``position`` and ``eta_s`` (None unless it is queued) and
    ``times_out_in_s`` (set when its queue timeout is expected to fail it before it starts).
    Another client's job, for a ``viewer`` that may not see it: ``{state, position, eta_s}`` only."""
    with rt.lock:
        position = positions.position_of(rt, job)
        eta = None if position is None else positions.eta_for(rt, job, position)
        if not viewer.may_see(job):
            return {"state": job.state.value, "position": position, "eta_s": eta, "hidden": True}
        out = job.summary()
        out["position"] = position
        out["eta_s"] = eta
        out["times_out_in_s"] = positions.times_out_in(rt, job, eta)
        if rt.cluster is not None:  # the server running it or that ran it last
            out["server"] = _server_of(rt, job)
        return out


def _server_of(rt: Runtime, job: Job) -> str | None:
    assert rt.cluster is not None
    if job.prompt_id in rt.queue.running:
        return rt.cluster.server_id
    try:
        return rt.cluster.ctx.server_of(job.prompt_id) if not job.state.queued else None
    except Exception:
        return None


def list_jobs(rt: Runtime, client_id: str | None = None, state: str | None = None, limit: int = 100,
              offset: int = 0, viewer: Viewer = EVERYONE) -> dict[str, Any]:
    """Running, then queued in run order, then finished (newest first); filtered, then paged.
    Cluster mode: the cluster's shared records (``cluster_listing``); this server's own records only
    while Redis is unreachable (then ``cluster_available`` is False)."""
    with rt.lock:
        extra: dict[str, Any] = {}
        if rt.cluster is not None:
            try:
                page, total = cluster_listing.page(rt, client_id, state, limit, offset)
                return {"jobs": [job_view(rt, j, viewer) for j in page], "total": total, "offset": offset,
                        "limit": limit, "cluster_available": True}
            except Exception as e:  # Redis unreachable: what this server knows
                extra = {"cluster_available": False, "error": f"Redis unreachable: {e}"}
        queue = rt.queue
        candidates = [queue.jobs[p] for p in queue.running] + list(queue.scheduler) \
            + list(reversed(queue.finished.values()))
        if client_id is not None:
            candidates = [j for j in candidates if j.client_id == client_id]
        if state is not None:
            candidates = [j for j in candidates if j.state.value == state]
        page = candidates[offset:offset + limit]
        return {"jobs": [job_view(rt, j, viewer) for j in page], "total": len(candidates), "offset": offset,
                "limit": limit, **extra}


def cluster_pending(rt: Runtime, limit: int) -> list[Job] | None:
    """The shared queue's first ``limit`` pending jobs (``[]`` while Redis is unreachable); None off cluster."""
    if rt.cluster is None:
        return None
    try:
        return [decode(q) for q in rt.cluster.rq.page(0, limit, payload=True)]
    except Exception:
        return []


def cluster_context(rt: Runtime) -> ClusterContext | None:
    return None if rt.cluster is None else rt.cluster.ctx


def cluster_depth(rt: Runtime) -> int | None:
    """Pending jobs in the shared queue (ZCARD; 0 while Redis is unreachable); None off cluster."""
    return _shared_depth(rt)[0]


def _shared_depth(rt: Runtime) -> tuple[int | None, str | None]:
    """(pending jobs in the shared queue, None) — or (0, why) while Redis is unreachable; (None, None)
    off cluster. One ZCARD: it doubles as the reachability probe of health and status."""
    if rt.cluster is None:
        return None, None
    try:
        return len(rt.cluster.rq), None
    except Exception as e:
        return 0, f"Redis unreachable: {e}"


def _leases_in_use(rt: Runtime) -> list[dict[str, Any]]:
    """GPU slots held; while Redis is unreachable, the slots this server holds (its own books)."""
    try:
        return rt.leases.in_use(rt.config.max_concurrent)
    except Exception:
        held_here = getattr(rt.leases, "held_here", None)
        return held_here() if held_here is not None else []


def health(rt: Runtime) -> dict[str, Any]:
    """Ready, and the worker thread alive: it asks for work every few seconds unless it is running one.

    Cluster mode adds ``redis_up``; while Redis is unreachable ``ok`` is False (the server finishes
    what it runs but cannot admit, so a load balancer should send new prompts elsewhere)."""
    with rt.lock:
        seen = None if rt.worker_seen is None else round(time.monotonic() - rt.worker_seen, 1)
        worker_ok = bool(rt.queue.running) or (seen is not None and seen < WORKER_SILENCE_LIMIT)
        depth, redis_error = _shared_depth(rt)
        out = {"ok": rt.ready and worker_ok and redis_error is None, "ready": rt.ready, "worker_seen_s_ago": seen,
               "running": len(rt.queue.running), "pending": rt.queue.pending if depth is None else depth,
               "state": rt.dispatch_state, "version": __version__}
        if rt.cluster is not None:
            out["redis_up"] = redis_error is None
            if redis_error is not None:
                out["error"] = redis_error
        return out


def counts(rt: Runtime) -> Counter[tuple[str, str]]:
    """Live (queued and running) jobs by (state, priority)."""
    out: Counter[tuple[str, str]] = Counter()
    for job in rt.queue.jobs.values():
        out[(job.state.value, job.priority.label)] += 1
    return out


def status(rt: Runtime, *, can_admin: bool = False, viewer: Viewer = EVERYONE) -> dict[str, Any]:
    with rt.lock:
        queue, cfg = rt.queue, rt.config
        by_state: Counter[str] = Counter()
        by_priority: Counter[str] = Counter()
        for (state, priority), n in counts(rt).items():
            by_state[state] += n
            if JobState(state).queued:
                by_priority[priority] += n
        for job in queue.finished.values():
            by_state[job.state.value] += 1
        reading = rt.last_reading or rt.probe.read()
        leases = _leases_in_use(rt)
        depth, redis_error = _shared_depth(rt)
        cluster = None if rt.cluster is None else {
            "available": redis_error is None, "error": redis_error, "cluster": rt.cluster.ctx.cluster,
            "server_id": rt.cluster.server_id}
        return {
            "version": __version__,
            "instance": rt.instance_id,
            "state": rt.dispatch_state,
            "ready": rt.ready,
            "counts": {"by_state": dict(by_state), "pending_by_priority": dict(by_priority),
                       "pending": queue.pending if depth is None else depth, "running": len(queue.running)},
            "running": [job_view(rt, queue.jobs[p], viewer) for p in queue.running],
            "memory": None if reading is None else {"used": reading.used, "total": reading.total,
                                                    "source": reading.source,
                                                    "used_fraction": round(reading.used_fraction, 4)},
            "gate": rt.last_gate.as_dict() if rt.last_gate else None,
            "concurrency": {"limit": cfg.max_concurrent, "in_use": len(leases), "holders": leases},
            "config": {k: v for k, v in cfg.public().items() if k in SUMMARY_KEYS},
            "can_admin": can_admin,
            "cluster": cluster,
        }


def metrics_snapshot(rt: Runtime) -> dict[str, Any]:
    """What the live gauges of ``/governor/metrics`` read at scrape time."""
    with rt.lock:
        reading = rt.last_reading
        return {
            "counts": counts(rt),
            "state": rt.dispatch_state,
            "gate_open": rt.last_gate.open if rt.last_gate else True,
            "stuck": sum(1 for j in rt.queue.jobs.values() if j.state is JobState.STUCK),
            "memory": None if reading is None else {"used": reading.used, "total": reading.total,
                                                    "source": reading.source},
            "leases": len(_leases_in_use(rt)),
            "lease_limit": rt.config.max_concurrent,
        }
