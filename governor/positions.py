"""Positions, ETAs and the governor's own events (``governor.queue``, ``governor.job``).

An ETA is the seconds until a queued job starts: what the running attempts still need, then the
expected duration (median of recent runs of the same workflow, ``workflow_stats``) of every job
ahead of it, and never before a retry's backoff ends. ``None`` when a duration on the way is
unknown, and while paused. Expected starts are kept as wall-clock times, so an ETA counts down
steadily between queue changes (a client counting down locally agrees with the server). The
table of every queued job's position and start is computed in one pass and cached per queue
version; ``governor.queue`` events carry only what moved since a client was last told.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from .jobs import Job
from .runtime import PAUSED, RUNNING, Runtime

ETA_EXACT_LIMIT = 256  # beyond this many jobs ahead (and no current table), ETA is extrapolated
OVERRUN_FLOOR = 0.1  # a running attempt is never expected to end in less than this fraction of its usual time
NEVER = float("inf")
CLUSTER_BROADCAST_LIMIT = 200  # cluster mode: position deltas go to the first this many jobs of the shared queue


def _expected(rt: Runtime, job: Job) -> float | None:
    return rt.stats.expected_seconds(job.fingerprint)


def _attempt_end(expected: float, started_at: float, now: float) -> tuple[float, float]:
    """(expected end, until when that estimate holds) of an attempt running since ``started_at``.

    An attempt that overruns its usual time is expected to run as long again (its estimate
    doubles), so the ETAs behind it count down steadily between doublings instead of creeping.
    """
    if expected <= 0:
        return now, NEVER
    total = expected
    while started_at + total - now < OVERRUN_FLOOR * expected:
        total *= 2
    end = started_at + total
    return end, end - OVERRUN_FLOOR * expected


def running_end(rt: Runtime, now: float) -> tuple[float | None, float]:
    """When the running attempts are expected to be done (None: a duration is unknown), and until
    when that estimate holds."""
    end: float | None = now
    valid_until = NEVER
    for job, _ in rt.queue.attempts():
        expected = _expected(rt, job)
        if expected is None or job.started_at is None:
            end = None
            continue
        attempt_end, holds = _attempt_end(expected, job.started_at, now)
        valid_until = min(valid_until, holds)
        if end is not None:
            end = max(end, attempt_end)
    return end, valid_until


def _starts(rt: Runtime, jobs: Iterable[Job], now: float) -> Iterator[tuple[Job, float | None]]:
    """Each of ``jobs`` (in dispatch order, from the front) with its expected start (wall-clock seconds)."""
    t, _ = running_end(rt, now)
    for job in jobs:
        if t is not None and job.not_before > t:
            t = job.not_before
        yield job, t
        expected = _expected(rt, job)
        t = None if (t is None or expected is None) else t + expected


def _table(rt: Runtime, now: float) -> dict[str, tuple[int, float | None]]:
    """Position and expected start of every queued job: one pass in dispatch order, cached while the
    queue is unchanged and the running attempts' estimates hold."""
    cache, scheduler = rt.positions, rt.queue.scheduler
    if cache.version == scheduler.version and now < cache.valid_until:
        return cache.table
    _, cache.valid_until = running_end(rt, now)
    cache.table = {job.prompt_id: (position, start)
                   for position, (job, start) in enumerate(_starts(rt, scheduler, now), start=1)}
    cache.version = scheduler.version
    return cache.table


def invalidate(rt: Runtime) -> None:
    rt.positions.version = -1


def position_of(rt: Runtime, job: Job) -> int | None:
    """1-based place among queued jobs (cluster mode: in the whole cluster, ZRANK); None when not queued."""
    if rt.cluster is not None:
        if not job.state.queued:
            return None
        try:
            return rt.cluster.rq.position(job.prompt_id)
        except Exception:  # Redis unreachable: the place is unknown for now
            return None
    return rt.queue.scheduler.position(job) if rt.queue.is_queued(job.prompt_id) else None


def _seconds(start: float | None, now: float) -> float | None:
    return None if start is None else round(max(0.0, start - now), 1)


def eta_for(rt: Runtime, job: Job, position: int) -> float | None:
    """Seconds until ``job`` starts: 0 while it runs; None when finished, unknown or paused.

    From the position table when it is current, else by walking the jobs ahead (cheap near the
    front), else extrapolated from the expected durations.
    """
    if position <= 0:  # not waiting: running (starts now) or finished
        return 0.0 if job.state.active else None
    if rt.dispatch_state == PAUSED:
        return None  # nothing starts until an admin resumes
    now = rt.clock()
    if rt.cluster is not None:  # the jobs ahead share the cluster's live servers
        expected = rt.stats.expected_seconds(job.fingerprint) or rt.stats.expected_seconds("")
        if expected is None:
            return None
        servers = max(1, rt.cluster.alive_count)
        return round(((position - 1) // servers) * expected, 1)
    cache, scheduler = rt.positions, rt.queue.scheduler
    if cache.version == scheduler.version and now < cache.valid_until:
        return _seconds(cache.table.get(job.prompt_id, (0, None))[1], now)
    if position <= ETA_EXACT_LIMIT:
        walked = list(_starts(rt, itertools.islice(scheduler, position), now))
        return _seconds(walked[-1][1], now) if walked else None
    expected = rt.stats.expected_seconds(job.fingerprint)
    end, _ = running_end(rt, now)
    return None if expected is None or end is None else _seconds(end + (position - 1) * expected, now)


def times_out_in(rt: Runtime, job: Job, eta: float | None) -> float | None:
    """Seconds until the queue timeout fails ``job``, when it is expected to come before its start
    (``eta`` later than the time left); else None (no timeout, unknown ETA, or paused)."""
    if not job.state.queued:
        return None
    left = rt.queue.seconds_left(job, rt.clock())
    if left is None or eta is None or eta <= left or rt.dispatch_state == PAUSED:
        return None
    return round(left, 1)


def retry_after(rt: Runtime) -> int | None:
    """Whole seconds a refused client should wait before trying again (at least 1); None while
    paused or draining, when waiting cannot help."""
    if rt.dispatch_state != RUNNING:
        return None
    now = rt.clock()
    end, _ = running_end(rt, now)
    remaining = 0.0 if end is None else end - now
    if not remaining:
        recent = rt.stats.expected_seconds("")
        remaining = recent or 5.0
    return max(1, int(remaining + 0.999))


def broadcast(rt: Runtime, now: float, force: bool = False) -> None:
    """Send each client the positions and ETAs of its queued jobs that moved (throttled)."""
    cache, queue = rt.positions, rt.queue
    if not force and now - cache.last_broadcast < rt.config.event_throttle:
        return
    if rt.cluster is not None:
        _cluster_broadcast(rt, now)
        return
    if not force and cache.broadcast_version == queue.scheduler.version and now < cache.valid_until:
        return
    table = _table(rt, now)
    cache.broadcast_version = queue.scheduler.version
    cache.last_broadcast = now
    paused = rt.dispatch_state == PAUSED
    total = queue.pending
    by_sid: dict[str, dict[str, Any]] = {}
    for prompt_id, (position, start) in table.items():
        job = queue.jobs[prompt_id]
        if not job.client_id:
            continue
        if paused:
            start = None
        previous = cache.sent.get(prompt_id)
        changed = previous is None or previous[0] != position or _start_moved(previous[1], start, now)
        if changed or cache.sent_totals.get(job.client_id) != total:
            eta = _seconds(start, now)
            by_sid.setdefault(job.client_id, {})[prompt_id] = {
                "position": position, "eta_s": eta, "state": job.state.value,
                "times_out_in_s": times_out_in(rt, job, eta)}
            cache.sent[prompt_id] = (position, start)
    for sid, jobs in by_sid.items():
        cache.sent_totals[sid] = total
        rt.host.send("governor.queue", {"pending": total, "running": len(queue.running), "jobs": jobs}, sid)


def _cluster_broadcast(rt: Runtime, now: float) -> None:
    """Cluster mode: the same deltas for the first ``CLUSTER_BROADCAST_LIMIT`` jobs of the shared
    queue (one page script); a client id that is not connected here is dropped by the host."""
    assert rt.cluster is not None
    cache = rt.positions
    cache.last_broadcast = now
    try:
        page, total = rt.cluster.rq.page(0, CLUSTER_BROADCAST_LIMIT), len(rt.cluster.rq)
    except Exception:
        return  # Redis unreachable: the next tick tries again
    expected = None if rt.dispatch_state == PAUSED else rt.stats.expected_seconds("")
    servers = max(1, rt.cluster.alive_count)
    by_sid: dict[str, dict[str, Any]] = {}
    for position, q in enumerate(page, start=1):
        if q.fair_key.startswith("ip:"):
            continue  # no client id: nobody to tell
        eta = None if expected is None else round(((position - 1) // servers) * expected, 1)
        if cache.sent.get(q.prompt_id) == (position, eta) and cache.sent_totals.get(q.fair_key) == total:
            continue
        cache.sent[q.prompt_id] = (position, eta)
        by_sid.setdefault(q.fair_key, {})[q.prompt_id] = {"position": position, "eta_s": eta,
                                                            "state": "pending", "times_out_in_s": None}
    listed = {q.prompt_id for q in page}
    for prompt_id in [p for p in cache.sent if p not in listed]:
        del cache.sent[prompt_id]  # taken, ended or beyond the limit
    for sid, jobs in by_sid.items():
        cache.sent_totals[sid] = total
        rt.host.send("governor.queue", {"pending": total, "running": len(rt.queue.running), "jobs": jobs}, sid)


def forget(rt: Runtime, prompt_id: str) -> None:
    """``prompt_id`` left the queue for good: no more position deltas for it."""
    rt.positions.sent.pop(prompt_id, None)


def emit_job(rt: Runtime, job: Job, event: str = "state", **extra: Any) -> None:
    """Tell the job's client its state changed (``governor.job``)."""
    if not job.client_id:
        return
    data = {
        "prompt_id": job.prompt_id, "event": event, "state": job.state.value,
        "reason": job.reason.value if job.reason else None, "attempt": job.attempts,
        "max_attempts": job.max_attempts, "priority": job.priority.label, "position": position_of(rt, job),
        "pending": rt.queue.pending, "last_error": job.errors[-1] if job.errors else None, **extra,
    }
    rt.host.send("governor.job", data, job.client_id)


def _start_moved(before: float | None, after: float | None, now: float) -> bool:
    """Whether an expected start moved enough to tell the client (2 s, or a tenth of the wait)."""
    if before is None or after is None:
        return before != after
    return abs(after - before) >= max(2.0, 0.1 * (before - now))
