"""Positions, ETAs and the governor's own events (``governor.queue``, ``governor.job``).

An ETA is the seconds until a queued job starts: what the running attempts still need, then the
expected duration (median of recent runs of the same workflow, ``workflow_stats``) of every job
ahead of it, and never before a retry's backoff ends. ``None`` when a duration on the way is
unknown. The table of every queued job's position and ETA is computed in one pass and cached per
queue version; ``governor.queue`` events carry only what moved since a client was last told.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from .jobs import Job
from .runtime import Runtime

ETA_EXACT_LIMIT = 256  # beyond this many jobs ahead (and no current table), ETA is extrapolated


def _expected(rt: Runtime, job: Job) -> float | None:
    return rt.stats.expected_seconds(job.fingerprint)


def running_remaining(rt: Runtime, now: float) -> float:
    """Seconds until the running attempts are expected to end (the longest of them)."""
    remaining = 0.0
    for job, _ in rt.queue.attempts():
        expected = _expected(rt, job)
        if expected is not None and job.started_at is not None:
            # A run that overruns its usual time is not about to end: keep a tenth of it as the estimate.
            remaining = max(remaining, expected - (now - job.started_at), 0.1 * expected)
    return max(0.0, remaining)


def _etas(rt: Runtime, jobs: Iterable[Job], now: float) -> Iterator[tuple[Job, float | None]]:
    """Each of ``jobs`` (in dispatch order, from the front) with its seconds until start."""
    t: float | None = running_remaining(rt, now)
    for job in jobs:
        if t is not None and job.not_before > now:
            t = max(t, job.not_before - now)
        yield job, None if t is None else round(t, 1)
        expected = _expected(rt, job)
        t = None if (t is None or expected is None) else t + expected


def refresh(rt: Runtime, now: float) -> dict[str, tuple[int, float | None]]:
    """Position and ETA (seconds until start) of every queued job: one pass in dispatch order."""
    cache, scheduler = rt.positions, rt.queue.scheduler
    if cache.version == scheduler.version and cache.table:
        return cache.table
    cache.table = {job.prompt_id: (position, eta)
                   for position, (job, eta) in enumerate(_etas(rt, scheduler, now), start=1)}
    cache.version = scheduler.version
    return cache.table


def position_of(rt: Runtime, job: Job) -> int | None:
    """1-based place among queued jobs; None when ``job`` is not queued."""
    return rt.queue.scheduler.position(job) if rt.queue.is_queued(job.prompt_id) else None


def eta_for(rt: Runtime, job: Job, position: int) -> float | None:
    """Seconds until ``job`` starts: from the position table when it is current, else by walking the
    jobs ahead (cheap near the front), else extrapolated from the expected durations."""
    if position <= 0:  # not waiting: running (starts now) or finished
        return 0.0 if job.state.active else None
    now = rt.clock()
    scheduler = rt.queue.scheduler
    if rt.positions.version == scheduler.version:
        return rt.positions.table.get(job.prompt_id, (0, None))[1]
    if position <= ETA_EXACT_LIMIT:
        walked = list(_etas(rt, itertools.islice(scheduler, position), now))
        return walked[-1][1] if walked else None
    expected = rt.stats.expected_seconds(job.fingerprint)
    return None if expected is None else round(running_remaining(rt, now) + (position - 1) * expected, 1)


def retry_after(rt: Runtime) -> int:
    """Whole seconds a refused client should wait before trying again (at least 1)."""
    remaining = running_remaining(rt, rt.clock())
    if not remaining:
        recent = rt.stats.expected_seconds("")
        remaining = recent or 5.0
    return max(1, int(remaining + 0.999))


def broadcast(rt: Runtime, now: float, force: bool = False) -> None:
    """Send each client the positions and ETAs of its queued jobs that moved (throttled)."""
    cache, queue = rt.positions, rt.queue
    if not force and now - cache.last_broadcast < rt.config.event_throttle:
        return
    if cache.broadcast_version == queue.scheduler.version and not force:
        return
    cache.broadcast_version = queue.scheduler.version
    cache.last_broadcast = now
    table = refresh(rt, now)
    total = queue.pending
    by_sid: dict[str, dict[str, Any]] = {}
    for prompt_id, (position, eta) in table.items():
        job = queue.jobs[prompt_id]
        if not job.client_id:
            continue
        previous = cache.sent.get(prompt_id)
        changed = previous is None or previous[0] != position or _eta_moved(previous[1], eta)
        if changed or cache.sent_totals.get(job.client_id) != total:
            by_sid.setdefault(job.client_id, {})[prompt_id] = {"position": position, "eta_s": eta,
                                                               "state": job.state.value}
            cache.sent[prompt_id] = (position, eta)
    for sid, jobs in by_sid.items():
        cache.sent_totals[sid] = total
        rt.host.send("governor.queue", {"pending": total, "running": len(queue.running), "jobs": jobs}, sid)


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


def _eta_moved(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before != after
    return abs(after - before) >= max(2.0, 0.1 * before)
