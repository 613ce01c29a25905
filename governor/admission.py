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
import logging
from dataclasses import dataclass
from typing import Any

from . import positions
from .cluster_queue import unavailable
from .config import GovernorConfig
from .errors import GovernorError, conflict
from .jobs import Job, Priority
from .prompt_ids import prompt_id_in_use
from .runtime import DRAINING, Runtime
from .workflow_stats import workflow_fingerprint

log = logging.getLogger("restoration_governor.governor")


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


def queue_timeout_for(config: GovernorConfig, priority: Priority,
                      requested: float | None) -> tuple[float | None, str | None]:
    """The effective queue timeout in seconds (None = none) and a note when the request was not honoured.

    ``queue_timeout`` applies to high and normal priority, ``queue_timeout_low`` to low (batches;
    0 = none, the default). A request may only shorten it, never lengthen it (Triton's rule).
    """
    setting = "queue_timeout_low" if priority is Priority.LOW else "queue_timeout"
    configured = getattr(config, setting) or None
    if requested is None:
        return configured, None
    if configured is not None and requested > configured:
        return configured, f"queue timeout can only be shortened; kept {configured:g} s ({setting})"
    return requested, None


def timeout_remedy(priority: Priority) -> str:
    """What to change so a prompt is not failed by its queue timeout (said in notes and in the failure)."""
    if priority is Priority.LOW:
        return "raise queue_timeout_low in the governor settings (0 = none), or send fewer prompts at once"
    return ("send batches with X-Priority: low (no queue timeout unless queue_timeout_low is set), or raise "
            "queue_timeout in the governor settings (0 = none)")


def timeout_warning(info: dict[str, Any], priority: Priority) -> str | None:
    """A note for an admission expected to start after its queue timeout (``admission_info``'s block)."""
    left = info.get("times_out_in_s")
    if left is None:
        return None
    return (f"expected to start in about {info['eta_s']:.0f} s, but its queue timeout fails it in "
            f"{left:.0f} s; {timeout_remedy(priority)}")


def reserve(rt: Runtime, fair_key: str) -> None:
    """Hold one queue place for a request that is being validated; 429 past a cap, 503 when draining."""
    with rt.lock:
        cfg, queue = rt.config, rt.queue
        if rt.dispatch_state == DRAINING:  # no Retry-After: the server will not take prompts again by itself
            rt.metrics.rejections.labels("draining").inc()
            raise GovernorError(503, "governor_draining", "The queue is draining",
                                "this server is finishing its queue and accepts no new prompts until an "
                                "admin resumes it")
        total = queue.waiting_with_reservations()
        mine = queue.waiting_with_reservations(fair_key)
        if rt.cluster is not None:  # the caps count the whole cluster's queue (one round trip)
            try:
                cluster_total, cluster_mine = rt.cluster.depths(fair_key)
            except Exception as e:
                raise unavailable(e) from None
            total, mine = total + cluster_total, mine + cluster_mine
        if cfg.max_pending and total >= cfg.max_pending:
            _reject_cap(rt, "max_pending", cfg.max_pending, f"the queue holds {total} prompts")
        if cfg.max_pending_per_client and mine >= cfg.max_pending_per_client:
            _reject_cap(rt, "max_pending_per_client", cfg.max_pending_per_client,
                        f"this client has {mine} prompts waiting")
        queue.reserve(fair_key)


def _reject_cap(rt: Runtime, cap: str, limit: int, details: str) -> None:
    retry_after = positions.retry_after(rt)  # None while paused: waiting cannot help
    rt.metrics.rejections.labels(cap).inc()
    hint = "the queue is paused" if retry_after is None else f"retry in about {retry_after} s"
    raise GovernorError(429, "queue_full", f"Queue full ({cap} = {limit})", f"{details}; {hint}",
                        {"cap": cap, "limit": limit, "retry_after_s": retry_after},
                        headers={} if retry_after is None else {"Retry-After": str(retry_after)})


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


def idempotency_lookup(rt: Runtime, key: str, request_digest: str | None = None) -> dict[str, Any] | None:
    """The answer first given for ``key`` (to replay), or None when the key is new or expired.

    422 ``idempotency_key_reused`` when the key was first used with a different request body
    (``request_digest`` = ``prompt_digest`` of the parsed body), as the IETF idempotency draft says.
    """
    with rt.lock:
        try:
            record = (rt.cluster.idempotency_get(key) if rt.cluster is not None
                      else rt.store.idempotency_get(key, rt.clock()))
        except GovernorError:
            raise
        except Exception as e:
            if rt.cluster is None:
                raise
            raise unavailable(e) from None
    if record is None:
        return None
    if "answer" not in record:
        return record  # a record written before request digests were kept: the answer itself
    if request_digest is not None and record.get("request") not in (None, request_digest):
        raise GovernorError(422, "idempotency_key_reused", "Idempotency-Key reused with a different request",
                            f"the key {key!r} was first used with another body (prompt id "
                            f"{record['answer'].get('prompt_id')}); use a new key for a new request",
                            {"idempotency_key": key, "prompt_id": record["answer"].get("prompt_id")})
    return record["answer"]


def idempotency_remember(rt: Runtime, key: str, body: dict[str, Any], request_digest: str | None = None) -> None:
    """Keep the answer ``body`` for ``key`` for ``idempotency_ttl`` seconds, with the request's digest."""
    with rt.lock:
        record = {"answer": body, "request": request_digest}
        if rt.cluster is not None:
            try:
                rt.cluster.idempotency_put(key, record, rt.config.idempotency_ttl)
            except Exception as e:  # the prompt is queued; only a replay of this key is lost
                log.warning("could not store Idempotency-Key %s in Redis: %s", key, e)
            return
        rt.store.idempotency_put(key, record, rt.clock() + rt.config.idempotency_ttl)


def is_known(rt: Runtime, prompt_id: str) -> bool:
    """Whether a pending, running or finished job (finished cache or store) uses ``prompt_id``."""
    with rt.lock:
        if rt.cluster is not None:
            try:
                return rt.queue.find(prompt_id) is not None or rt.cluster.known(prompt_id)
            except Exception as e:
                raise unavailable(e) from None
        return rt.queue.find(prompt_id) is not None or rt.store.get(prompt_id) is not None


def admit(rt: Runtime, number: float, prompt_id: str, prompt: dict, extra_data: dict, outputs: list,
          sensitive: dict, ticket: Ticket | None) -> Job:
    """Record a validated prompt (from PromptQueue.put) and queue it. Persisted before return."""
    with rt.lock:
        if rt.queue.find(prompt_id) is not None:  # a concurrent /prompt with the same id won the race
            raise prompt_id_in_use(prompt_id)
        now = rt.clock()
        if ticket is None:  # put() by other code (another pack): admit with defaults, caps do not apply
            ticket = Ticket(fair_key=str(extra_data.get("client_id") or "anonymous"))
        cfg, queue = rt.config, rt.queue
        timeout, _ = queue_timeout_for(cfg, ticket.priority, ticket.queue_timeout)
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
        if rt.cluster is not None:  # durable in Redis (AOF) before /prompt answers; any server may run it
            try:
                rt.cluster.push(job)
            except Exception as e:
                raise unavailable(e) from None
            rt.metrics.admissions.labels(job.priority.label).inc()
            ticket.job = job
            rt.wake_worker()
            return job
        queue.enqueue(job)  # assigns the fair-share tags that are persisted with it
        try:
            rt.store.insert(job)
        except Exception:
            queue.discard(job)
            if rt.store.get(prompt_id) is not None:  # an old finished record holds the id
                raise prompt_id_in_use(prompt_id) from None
            raise
        rt.metrics.admissions.labels(job.priority.label).inc()
        ticket.job = job
        rt.wake_worker()
        return job


def admission_info(rt: Runtime, job: Job) -> dict[str, Any]:
    """The ``governor`` block of the ``/prompt`` answer."""
    with rt.lock:
        position = positions.position_of(rt, job) or 0
        eta = positions.eta_for(rt, job, position)
        return {"position": position, "priority": job.priority.label, "eta_s": eta, "state": job.state.value,
                "queue_timeout_s": job.queue_timeout, "times_out_in_s": positions.times_out_in(rt, job, eta),
                "pending": rt.queue.pending}
