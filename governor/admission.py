"""Admission: caps and reservations, the duplicate guard, idempotency, and ``admit`` itself.

A ``POST /prompt`` first ``reserve``s a queue place (429 past ``max_pending`` or
``max_pending_per_client``, 503 while draining) so concurrent requests still being validated by
ComfyUI cannot overshoot a cap; ComfyUI's ``PromptQueue.put`` then calls ``admit``, which records
the job durably and queues it, consuming the reservation. The rules about what a request may ask
for (high priority, a queue timeout) are owned here and by ``auth.require_priority_right``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import positions
from .config import GovernorConfig
from .errors import GovernorError, conflict
from .jobs import Job, Priority
from .runtime import DRAINING, Runtime
from .workflow_stats import workflow_fingerprint


@dataclass
class Ticket:
    """What the admission middleware decided for one request, handed to ``admit`` through put()."""

    fair_key: str  # the client for fairness and caps
    priority: Priority = Priority.NORMAL
    queue_timeout: float | None = None  # requested seconds (it may only shorten the configured one)
    idempotency_key: str | None = None
    reserved: bool = False  # holds a reservation that ``admit`` consumes
    job: Job | None = None  # set by admit()


def prompt_digest(prompt: Any) -> str:
    """A stable digest of a prompt body (the duplicate guard, re-validation after a restart)."""
    return hashlib.sha1(json.dumps(prompt, sort_keys=True, default=str).encode(), usedforsecurity=False).hexdigest()


def queue_timeout_for(config: GovernorConfig, requested: float | None) -> tuple[float | None, str | None]:
    """The effective queue timeout in seconds (None = none) and a note when the request was not honoured.

    A request may only shorten the configured ``queue_timeout``, never lengthen it (Triton's rule).
    """
    configured = config.queue_timeout or None
    if requested is None:
        return configured, None
    if configured is not None and requested > configured:
        return configured, f"queue timeout can only be shortened; kept {configured:g} s"
    return requested, None


def reserve(rt: Runtime, fair_key: str) -> None:
    """Hold one queue place for a request that is being validated; 429 past a cap, 503 when draining."""
    with rt.lock:
        cfg, queue = rt.config, rt.queue
        if rt.dispatch_state == DRAINING:
            rt.metrics.rejections.labels("draining").inc()
            raise GovernorError(503, "governor_draining", "The queue is draining",
                                "this server is finishing its queue and accepts no new prompts",
                                headers={"Retry-After": str(positions.retry_after(rt))})
        total = queue.waiting_with_reservations()
        if cfg.max_pending and total >= cfg.max_pending:
            _reject_cap(rt, "max_pending", cfg.max_pending, f"the queue holds {total} prompts")
        mine = queue.waiting_with_reservations(fair_key)
        if cfg.max_pending_per_client and mine >= cfg.max_pending_per_client:
            _reject_cap(rt, "max_pending_per_client", cfg.max_pending_per_client,
                        f"this client has {mine} prompts waiting")
        queue.reserve(fair_key)


def _reject_cap(rt: Runtime, cap: str, limit: int, details: str) -> None:
    retry_after = positions.retry_after(rt)
    rt.metrics.rejections.labels(cap).inc()
    raise GovernorError(429, "queue_full", f"Queue full ({cap} = {limit})", f"{details}; retry in about "
                        f"{retry_after} s", {"cap": cap, "limit": limit, "retry_after_s": retry_after},
                        headers={"Retry-After": str(retry_after)})


def unreserve(rt: Runtime, fair_key: str) -> None:
    with rt.lock:
        rt.queue.unreserve(fair_key)


def check_duplicate(rt: Runtime, fair_key: str, prompt: Any) -> None:
    """The optional double-submit guard (same client, same prompt, within duplicate_window): 409."""
    window = rt.config.duplicate_window
    if not window:
        return
    digest = prompt_digest(prompt)
    now = rt.clock()
    with rt.lock:
        recent = rt.recent_prompts
        for key in [k for k, (t, _) in recent.items() if now - t > window]:
            del recent[key]
        seen = recent.get((fair_key, digest))
        if seen is not None:
            rt.metrics.rejections.labels("duplicate").inc()
            raise conflict("duplicate_prompt", "Duplicate prompt",
                           f"the same prompt was queued by this client {now - seen[0]:.1f} s ago as {seen[1]}",
                           prompt_id=seen[1])


def remember_prompt(rt: Runtime, fair_key: str, prompt: Any, prompt_id: str) -> None:
    if not rt.config.duplicate_window:
        return
    digest = prompt_digest(prompt)
    with rt.lock:
        rt.recent_prompts[(fair_key, digest)] = (rt.clock(), prompt_id)


def idempotency_lookup(rt: Runtime, key: str) -> dict[str, Any] | None:
    with rt.lock:
        return rt.store.idempotency_get(key, rt.clock())


def idempotency_remember(rt: Runtime, key: str, body: dict[str, Any]) -> None:
    with rt.lock:
        rt.store.idempotency_put(key, body, rt.clock() + rt.config.idempotency_ttl)


def is_known(rt: Runtime, prompt_id: str) -> bool:
    with rt.lock:
        return prompt_id in rt.queue.jobs


def admit(rt: Runtime, number: float, prompt_id: str, prompt: dict, extra_data: dict, outputs: list,
          sensitive: dict, ticket: Ticket | None) -> Job:
    """Record a validated prompt (from PromptQueue.put) and queue it. Persisted before return."""
    with rt.lock:
        now = rt.clock()
        if ticket is None:  # put() by other code (another pack): admit with defaults, caps do not apply
            ticket = Ticket(fair_key=str(extra_data.get("client_id") or "anonymous"))
        cfg, queue = rt.config, rt.queue
        timeout, _ = queue_timeout_for(cfg, ticket.queue_timeout)
        job = Job(
            prompt_id=prompt_id, seq=queue.next_seq(), prompt=prompt, extra_data=extra_data, outputs=list(outputs),
            client_id=extra_data.get("client_id"), fair_key=ticket.fair_key, priority=ticket.priority,
            created_at=now, queued_at=now, max_attempts=cfg.retry_attempts + 1, queue_timeout=timeout,
            number=number, tier=int(ticket.priority), fingerprint=workflow_fingerprint(prompt),
            idempotency_key=ticket.idempotency_key, sensitive=dict(sensitive),
        )
        if ticket.reserved:
            queue.unreserve(ticket.fair_key)
            ticket.reserved = False
        queue.enqueue(job)  # assigns the fair-share tags that are persisted with it
        try:
            rt.store.insert(job)
        except Exception:
            queue.discard(job)
            raise
        rt.metrics.admissions.labels(job.priority.label).inc()
        ticket.job = job
        rt.wake_worker()
        return job


def admission_info(rt: Runtime, job: Job) -> dict[str, Any]:
    """The ``governor`` block of the ``/prompt`` answer."""
    with rt.lock:
        position = positions.position_of(rt, job) or 0
        return {"position": position, "priority": job.priority.label, "eta_s": positions.eta_for(rt, job, position),
                "state": job.state.value, "queue_timeout_s": job.queue_timeout, "pending": rt.queue.pending}
