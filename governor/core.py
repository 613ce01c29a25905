"""The governor: admission, dispatch, completion, timeouts and control, in plain Python.

It owns the queue. ComfyUI's worker thread asks it for the next prompt (``dispatch``) and
reports each attempt's end (``complete``); HTTP handlers admit prompts and act on jobs; a
watchdog thread calls ``tick`` a few times a second for timeouts, aging, memory sampling and
throttled position events. Everything is guarded by one re-entrant lock whose condition the
worker waits on. What the governor needs from ComfyUI (send an event, interrupt, release models,
write a history entry) comes through the small ``Host`` interface, so it is unit-testable alone.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import __version__
from .auth import is_admin
from .config import ConfigError, ConfigFile, GovernorConfig, apply_patch, effective_admin_token
from .errors import GovernorError, bad_request, conflict, forbidden, not_found
from .failures import backoff_delay, classify, is_retryable
from .jobs import Job, JobState, Priority, Reason
from .leases import Lease, LeaseManager
from .memory import GateDecision, MemoryReading, ProbeChain, evaluate_gate
from .metrics import GovernorMetrics
from .scheduler import FairScheduler
from .store import JobStore
from .workflow_stats import WorkflowStats, workflow_fingerprint

log = logging.getLogger("restoration_governor.governor")

RUNNING, PAUSED, DRAINING = "running", "paused", "draining"
WORKER_SILENCE_LIMIT = 30.0  # seconds without a dispatch poll (and nothing running) before health fails
ETA_EXACT_LIMIT = 256  # beyond this many jobs ahead (and no current table), ETA is extrapolated


class Host(Protocol):
    """What the governor asks of ComfyUI."""

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None: ...
    def queue_changed(self) -> None: ...
    def interrupt(self, prompt_id: str) -> None: ...
    def release_models(self) -> None: ...
    def write_history(self, job: Job, status: dict[str, Any], governor_info: dict[str, Any]) -> None: ...
    def delete_history(self, prompt_id: str) -> None: ...


@dataclass
class Ticket:
    """What the admission middleware decided for one request, handed to ``admit`` through put()."""

    fair_key: str
    priority: Priority = Priority.NORMAL
    queue_timeout: float | None = None
    idempotency_key: str | None = None
    notes: list[str] = field(default_factory=list)
    reserved: bool = False
    job: Job | None = None  # set by admit()


@dataclass
class Dispatch:
    job: Job | None = None
    release_models: bool = False


@dataclass
class Completion:
    """What the adapter must do after an attempt ended."""

    write_history: bool
    governor_info: dict[str, Any]
    free_memory: bool = False


def _now() -> float:
    return time.time()


class Governor:
    def __init__(
        self,
        *,
        config_file: ConfigFile,
        store: JobStore,
        leases: LeaseManager,
        probe: ProbeChain,
        host: Host,
        instance_id: str,
        clock: Callable[[], float] = _now,
        rng: random.Random | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.config_file = config_file
        self.config: GovernorConfig = config_file.load()
        self.store = store
        self.leases = leases
        self.probe = probe
        self.host = host
        self.instance_id = instance_id
        self.clock = clock
        self.rng = rng or random.Random()
        self.scheduler = FairScheduler(self.config.aging_interval)
        self.jobs: dict[str, Job] = {}  # queued and running
        self.running: dict[str, Lease | None] = {}
        self.finished: OrderedDict[str, Job] = OrderedDict()
        self.state = store.kv_get("dispatch_state") or RUNNING
        self.stats = WorkflowStats()
        self.metrics = GovernorMetrics(self.metrics_snapshot)
        self.ready = False
        self.worker_seen: float | None = None  # monotonic time the worker last asked for work
        self._seq = store.max_seq()
        self.dispatch_counter = store.max_dispatch_number()
        self._reserved: Counter[str] = Counter()
        self._queued_by_client: Counter[str] = Counter()
        self._deadlines: list[tuple[float, int, str]] = []
        self._recent_prompts: dict[tuple[str, str], tuple[float, str]] = {}
        self._gate_head: str | None = None
        self._last_gate: GateDecision | None = None
        self._last_reading: MemoryReading | None = None
        self._positions: dict[str, tuple[int, float | None]] = {}
        self._positions_version = -1
        self._sent: dict[str, tuple[int, float | None]] = {}
        self._sent_totals: dict[str, int] = {}
        self._last_broadcast = 0.0
        self._broadcast_version = -1
        self._finished_since_prune = 0

    # =============================================================================================
    # admission
    # =============================================================================================
    def reserve(self, fair_key: str) -> None:
        """Hold one queue place for a request that is being validated; 429 past a cap, 503 when draining."""
        with self.lock:
            cfg = self.config
            if self.state == DRAINING:
                self.metrics.rejections.labels("draining").inc()
                raise GovernorError(503, "governor_draining", "The queue is draining",
                                    "this server is finishing its queue and accepts no new prompts",
                                    headers={"Retry-After": str(self._retry_after())})
            total = len(self.scheduler) + sum(self._reserved.values())
            if cfg.max_pending and total >= cfg.max_pending:
                self._reject_cap("max_pending", cfg.max_pending, f"the queue holds {total} prompts")
            mine = self._queued_by_client[fair_key] + self._reserved[fair_key]
            if cfg.max_pending_per_client and mine >= cfg.max_pending_per_client:
                self._reject_cap("max_pending_per_client", cfg.max_pending_per_client,
                                 f"this client has {mine} prompts waiting")
            self._reserved[fair_key] += 1

    def _reject_cap(self, cap: str, limit: int, details: str) -> None:
        retry_after = self._retry_after()
        self.metrics.rejections.labels(cap).inc()
        raise GovernorError(429, "queue_full", f"Queue full ({cap} = {limit})", f"{details}; retry in about "
                            f"{retry_after} s", {"cap": cap, "limit": limit, "retry_after_s": retry_after},
                            headers={"Retry-After": str(retry_after)})

    def unreserve(self, fair_key: str) -> None:
        with self.lock:
            if self._reserved[fair_key] > 0:
                self._reserved[fair_key] -= 1
            if not self._reserved[fair_key]:
                del self._reserved[fair_key]

    def check_duplicate(self, fair_key: str, prompt: Any) -> None:
        """The optional double-submit guard (same client, same prompt, within duplicate_window)."""
        window = self.config.duplicate_window
        if not window:
            return
        digest = hashlib.sha1(json.dumps(prompt, sort_keys=True, default=str).encode(),
                              usedforsecurity=False).hexdigest()
        now = self.clock()
        with self.lock:
            for key in [k for k, (t, _) in self._recent_prompts.items() if now - t > window]:
                del self._recent_prompts[key]
            seen = self._recent_prompts.get((fair_key, digest))
            if seen is not None:
                self.metrics.rejections.labels("duplicate").inc()
                raise conflict("duplicate_prompt", "Duplicate prompt",
                               f"the same prompt was queued by this client {now - seen[0]:.1f} s ago as {seen[1]}",
                               prompt_id=seen[1])

    def remember_prompt(self, fair_key: str, prompt: Any, prompt_id: str) -> None:
        if not self.config.duplicate_window:
            return
        digest = hashlib.sha1(json.dumps(prompt, sort_keys=True, default=str).encode(),
                              usedforsecurity=False).hexdigest()
        with self.lock:
            self._recent_prompts[(fair_key, digest)] = (self.clock(), prompt_id)

    def idempotency_lookup(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            return self.store.idempotency_get(key, self.clock())

    def idempotency_remember(self, key: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.store.idempotency_put(key, body, self.clock() + self.config.idempotency_ttl)

    def is_known(self, prompt_id: str) -> bool:
        with self.lock:
            return prompt_id in self.jobs

    def admit(self, number: float, prompt_id: str, prompt: dict, extra_data: dict, outputs: list,
              sensitive: dict, ticket: Ticket | None) -> Job:
        """Record a validated prompt (from PromptQueue.put) and queue it. Persisted before return."""
        with self.lock:
            now = self.clock()
            if ticket is None:  # put() by other code (another pack): admit with defaults, caps do not apply
                ticket = Ticket(fair_key=str(extra_data.get("client_id") or "anonymous"))
            cfg = self.config
            timeout = cfg.queue_timeout or None
            if ticket.queue_timeout is not None:
                timeout = min(timeout, ticket.queue_timeout) if timeout else ticket.queue_timeout
            self._seq += 1
            job = Job(
                prompt_id=prompt_id, seq=self._seq, prompt=prompt, extra_data=extra_data, outputs=list(outputs),
                client_id=extra_data.get("client_id"), fair_key=ticket.fair_key, priority=ticket.priority,
                created_at=now, queued_at=now, max_attempts=cfg.retry_attempts + 1, queue_timeout=timeout,
                number=number, tier=int(ticket.priority), fingerprint=workflow_fingerprint(prompt),
                idempotency_key=ticket.idempotency_key, sensitive=dict(sensitive),
            )
            if ticket.reserved:
                self.unreserve(ticket.fair_key)
                ticket.reserved = False
            self._enqueue(job)  # assigns the fair-share tags that are persisted with it
            try:
                self.store.insert(job)
            except Exception:
                self._unqueue(job)
                self.jobs.pop(job.prompt_id, None)
                raise
            self.metrics.admissions.labels(job.priority.label).inc()
            ticket.job = job
            self.cond.notify_all()
            return job

    def _enqueue(self, job: Job, *, head: bool = False, keep_tags: bool = False) -> None:
        self.jobs[job.prompt_id] = job
        self.scheduler.push(job, head=head, keep_tags=keep_tags)
        self._queued_by_client[job.fair_key] += 1
        deadline = job.deadline()
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, job.seq, job.prompt_id))

    def _unqueue(self, job: Job, *, dispatched: bool = False) -> None:
        if dispatched:
            self.scheduler.mark_dispatched(job)
        else:
            self.scheduler.remove(job)
        self._queued_by_client[job.fair_key] -= 1
        if self._queued_by_client[job.fair_key] <= 0:
            del self._queued_by_client[job.fair_key]

    def admission_info(self, job: Job) -> dict[str, Any]:
        with self.lock:
            position = self.scheduler.position(job) if job.prompt_id in self.scheduler else 0
            return {"position": position, "priority": job.priority.label, "eta_s": self._eta_for(job, position),
                    "state": job.state.value, "queue_timeout_s": job.queue_timeout, "pending": len(self.scheduler)}

    # =============================================================================================
    # dispatch (worker thread)
    # =============================================================================================
    def dispatch(self, timeout: float | None, wake: Callable[[], bool] | None = None) -> Dispatch:
        """Block until a prompt may start (returned with its lease held) or ``timeout`` passes.

        ``wake()`` is checked whenever the condition is notified: when it is true the call returns
        empty at once (ComfyUI's worker must handle ``/free`` flags promptly).
        """
        deadline = None if timeout is None else self.clock() + timeout
        with self.cond:
            while True:
                now = self.clock()
                self.worker_seen = time.monotonic()
                result = self._try_dispatch(now)
                if result is not None:
                    return result
                if wake is not None and wake():
                    return Dispatch()
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    return Dispatch()
                poll = 0.25 if self.scheduler else 5.0  # also bounds how stale worker_seen can get
                self.cond.wait(poll if remaining is None else min(remaining, poll))

    def _try_dispatch(self, now: float) -> Dispatch | None:
        if not self.ready or self.state != RUNNING:
            return None
        cfg = self.config
        while True:
            head = self.scheduler.first(lambda j: j.not_before <= now)
            if head is None:
                return None
            self._track_gate_head(head)
            reading = self._read_memory()
            decision = evaluate_gate(reading, cfg, self.stats.peak_bytes(head.fingerprint))
            self._last_gate = decision
            if not decision.open:
                if head.gate_wait_since is None:
                    head.gate_wait_since = now
                    self._set_state(head, JobState.WAITING_FOR_MEMORY)
                    self.metrics.gate_waits.inc()
                    log.info("prompt %s waits for memory: %s", head.prompt_id, decision.why)
                    self._emit_job(head, why=decision.why)
                if not head.released_models_for_wait:
                    head.released_models_for_wait = True
                    self.metrics.model_releases.labels("memory_gate").inc()
                    return Dispatch(release_models=True)
                if cfg.max_gate_wait and now - head.gate_wait_since >= cfg.max_gate_wait:
                    self.metrics.timeouts.labels("memory_gate").inc()
                    if cfg.gate_timeout_action == "fail":
                        self._fail_unstarted(head, Reason.MEMORY_GATE_TIMEOUT,
                                             f"waited {now - head.gate_wait_since:.0f} s for memory: {decision.why}")
                        continue
                    log.warning("prompt %s starts despite the memory gate after %.0f s (%s)", head.prompt_id,
                                now - head.gate_wait_since, decision.why)
                else:
                    return None
            lease = self.leases.try_acquire(cfg.max_concurrent, head.prompt_id)
            if lease is None:
                return None  # every slot is held (here or by another instance): poll again shortly
            self._start(head, lease, now, reading)
            return Dispatch(job=head)

    def _track_gate_head(self, head: Job) -> None:
        if self._gate_head == head.prompt_id:
            return
        previous = self.jobs.get(self._gate_head) if self._gate_head else None
        if previous is not None and previous.state is JobState.WAITING_FOR_MEMORY:
            previous.gate_wait_since = None
            previous.released_models_for_wait = False
            self._set_state(previous, JobState.PENDING)
        self._gate_head = head.prompt_id

    def _read_memory(self) -> MemoryReading | None:
        self._last_reading = self.probe.read()
        return self._last_reading

    def _start(self, job: Job, lease: Lease, now: float, reading: MemoryReading | None) -> None:
        self._unqueue(job, dispatched=True)
        if job.gate_wait_since is not None:
            self.metrics.gate_wait_seconds.observe(now - job.gate_wait_since)
        job.gate_wait_since = None
        job.released_models_for_wait = False
        self._gate_head = None
        job.attempts += 1
        job.started_at = now
        job.not_before = 0.0
        self.dispatch_counter += 1
        job.dispatch_number = self.dispatch_counter
        job.memory_baseline = reading.used if reading else None
        job.peak_memory = 0
        job.interrupt_reason = None
        job.interrupted_at = None
        self.running[job.prompt_id] = lease
        self._set_state(job, JobState.RUNNING, persist=False)
        self.store.update(job)
        self._emit_job(job)

    # =============================================================================================
    # completion (worker thread)
    # =============================================================================================
    def complete(self, prompt_id: str, success: bool, messages: list | None) -> Completion:
        with self.lock:
            job = self.jobs.get(prompt_id)
            if job is None or prompt_id not in self.running:
                return Completion(True, {})
            now = self.clock()
            lease = self.running.pop(prompt_id)
            if lease is not None:
                self.leases.release(lease)
            elapsed = now - (job.started_at or now)
            job.exec_seconds = elapsed  # (peaks were sampled by the watchdog while it ran)
            cfg = self.config
            if success:
                self.stats.record(job.fingerprint, elapsed, job.peak_memory)
                self.metrics.exec_seconds.labels("success").observe(elapsed)
                self._finalize(job, JobState.SUCCESS, None)
                return Completion(True, self._history_info(job))
            failure = classify(messages, cfg.transient_exceptions)
            if job.interrupt_reason is Reason.EXEC_TIMEOUT:
                failure_reason, state = Reason.EXEC_TIMEOUT, JobState.FAILED
            elif job.interrupt_reason is Reason.CANCELLED:
                failure_reason, state = Reason.CANCELLED, JobState.CANCELLED
            elif failure.reason is Reason.INTERRUPTED:
                failure_reason, state = Reason.INTERRUPTED, JobState.CANCELLED
            else:
                failure_reason, state = failure.reason, JobState.FAILED
            record = failure.record(job.attempts, now)
            record["reason"] = failure_reason.value
            job.errors.append(record)
            if state is JobState.FAILED and (job.retry_planned or self._will_retry(job, messages)):
                self.metrics.exec_seconds.labels("retried").observe(elapsed)
                self._retry(job, failure_reason, now)
                return Completion(False, {}, free_memory=failure_reason is Reason.OOM)
            self.metrics.exec_seconds.labels(state.value).observe(elapsed)
            self._finalize(job, state, failure_reason)
            return Completion(True, self._history_info(job))

    def _will_retry(self, job: Job, messages: list | None) -> bool:
        if job.interrupt_reason is not None:
            return False
        failure = classify(messages, self.config.transient_exceptions)
        return (failure.reason in (Reason.OOM, Reason.TRANSIENT, Reason.ERROR)
                and is_retryable(failure, self.config.retry_node_errors) and job.attempts < job.max_attempts)

    def hides_attempt_event(self, event: str, data: dict[str, Any]) -> bool:
        """True for ComfyUI's end-of-attempt events of an attempt that will be retried.

        ComfyUI tells the client ``execution_error`` and then ``executing {node: null}`` when an
        attempt fails; for an attempt the governor retries, a plain client would stop waiting (or
        raise) although the prompt goes on. Hidden, the client sees one prompt that ends once,
        with its final outcome; the governor's own ``governor.job`` events announce the retry.
        """
        prompt_id = data.get("prompt_id")
        with self.lock:
            job = self.jobs.get(prompt_id) if isinstance(prompt_id, str) else None
            if job is None:
                return False
            if event == "execution_error" and prompt_id in self.running:
                if self._will_retry(job, [["execution_error", data]]):
                    job.retry_planned = True  # complete() keeps this promise even if settings change meanwhile
                    return True
                return False
            return event == "executing" and data.get("node") is None and job.state.queued

    def _retry(self, job: Job, reason: Reason, now: float) -> None:
        cfg = self.config
        job.retry_planned = False
        delay = backoff_delay(job.attempts, cfg.retry_backoff, cfg.retry_backoff_max, cfg.retry_jitter, self.rng)
        self.metrics.retries.labels(reason.value).inc()
        job.not_before = now + delay
        job.queued_at = now
        job.started_at = None
        self._set_state(job, JobState.PENDING, persist=False)
        self._enqueue(job, head=True)
        self.store.update(job)
        log.warning("prompt %s failed with %s (attempt %d/%d); retrying in %.1f s", job.prompt_id, reason.value,
                    job.attempts, job.max_attempts, delay)
        self._emit_job(job, event="retry", retry_in_s=round(delay, 2), failure=reason.value)
        self.cond.notify_all()

    def _history_info(self, job: Job) -> dict[str, Any]:
        return {"state": job.state.value, "reason": job.reason.value if job.reason else None,
                "attempts": job.attempts, "errors": list(job.errors)}

    def _finalize(self, job: Job, state: JobState, reason: Reason | None) -> None:
        now = self.clock()
        self.jobs.pop(job.prompt_id, None)
        job.state = state
        job.reason = reason
        job.finished_at = now
        job.not_before = 0.0
        self.running.pop(job.prompt_id, None)
        waited_until = job.started_at if job.started_at is not None else now
        self.metrics.wait_seconds.labels(state.value).observe(max(0.0, waited_until - job.queued_at))
        self.metrics.finished.labels(state.value, reason.value if reason else "").inc()
        self.store.update(job)
        job.prompt = {}  # the store keeps it; memory holds summaries only
        job.sensitive = {}
        self.finished[job.prompt_id] = job
        while len(self.finished) > self.config.history_retention:
            self.finished.popitem(last=False)
        self._finished_since_prune += 1
        if self._finished_since_prune >= 100:
            self._finished_since_prune = 0
            self.store.prune_finished(self.config.history_retention)
            self.store.idempotency_prune(now)
        self._sent.pop(job.prompt_id, None)
        self._emit_job(job)

    def _fail_unstarted(self, job: Job, reason: Reason, message: str) -> None:
        """End a job that never ran (queue timeout, memory gate, invalid after restart)."""
        self._unqueue(job)
        now = self.clock()
        job.errors.append({"attempt": job.attempts, "at": now, "reason": reason.value,
                           "exception_type": f"governor.{reason.value}", "message": message,
                           "node_id": None, "node_type": None})
        self._finalize(job, JobState.FAILED, reason)
        error = {"prompt_id": job.prompt_id, "node_id": None, "node_type": None, "executed": [],
                 "exception_message": message, "exception_type": f"governor.{reason.value}", "traceback": [],
                 "current_inputs": {}, "current_outputs": [], "timestamp": int(now * 1000)}
        status = {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}
        self.host.write_history(job, status, self._history_info(job))
        if job.client_id:  # plain ComfyUI clients wait for these two
            self.host.send("execution_error", error, job.client_id)
            self.host.send("executing", {"node": None, "prompt_id": job.prompt_id}, job.client_id)
        self.host.queue_changed()

    # =============================================================================================
    # control
    # =============================================================================================
    def check_job_access(self, job: Job, client_id: str | None, admin: bool) -> None:
        if admin or (client_id and client_id == job.client_id):
            return
        raise forbidden("Not your job", "only the client that queued a job (by its client_id) or an admin may "
                        "change it")

    def find(self, prompt_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(prompt_id) or self.finished.get(prompt_id)
            if job is None:
                job = self.store.get(prompt_id)
            if job is None:
                raise not_found("job", prompt_id)
            return job

    def cancel(self, prompt_id: str, *, client_id: str | None = None, admin: bool = True) -> Job:
        with self.lock:
            job = self.find(prompt_id)
            self.check_job_access(job, client_id, admin)
            if job.state.queued:
                self._unqueue(job)
                job.errors.append({"attempt": job.attempts, "at": self.clock(), "reason": "cancelled",
                                   "exception_type": None, "message": "cancelled before it started",
                                   "node_id": None, "node_type": None})
                self._finalize(job, JobState.CANCELLED, Reason.CANCELLED)
                self.host.queue_changed()
            elif job.state.active:
                job.interrupt_reason = Reason.CANCELLED
                job.interrupted_at = self.clock()
                self.host.interrupt(prompt_id)
            else:
                raise conflict("job_finished", "Job already finished", f"{prompt_id} is {job.state.value}")
            return job

    def cancel_where(self, predicate: Callable[[Job], bool], *, first_only: bool) -> int:
        """Cancel queued jobs matching ``predicate`` (ComfyUI's queue delete / clear)."""
        with self.lock:
            hits = [job for job in list(self.scheduler) if predicate(job)]
            if first_only:
                hits = hits[:1]
            for job in hits:
                self.cancel(job.prompt_id)
            return len(hits)

    def set_priority(self, prompt_id: str, priority: Priority, *, client_id: str | None, admin: bool) -> Job:
        with self.lock:
            job = self.find(prompt_id)
            self.check_job_access(job, client_id, admin)
            if priority is Priority.HIGH and not admin:
                raise forbidden("High priority needs the admin token", "ask an admin, or use normal or low")
            if not job.state.queued:
                raise conflict("job_not_queued", "Only a waiting job can change priority",
                               f"{prompt_id} is {job.state.value}")
            job.priority = priority
            self.scheduler.requeue(job, tier=int(priority))
            self.store.update(job)
            self._emit_job(job)
            self.host.queue_changed()
            self.cond.notify_all()
            return job

    def retry(self, prompt_id: str, *, client_id: str | None, admin: bool) -> Job:
        """Put a failed or cancelled job back in the queue (a fresh set of attempts, same prompt_id)."""
        with self.lock:
            job = self.find(prompt_id)
            self.check_job_access(job, client_id, admin)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                raise conflict("job_not_retryable", "Only a failed or cancelled job can be retried",
                               f"{prompt_id} is {job.state.value}")
            full = self.store.get(prompt_id)
            if full is None or not full.prompt:
                raise conflict("job_not_retryable", "The job's prompt is no longer stored", prompt_id)
            self.finished.pop(prompt_id, None)
            now = self.clock()
            full.state = JobState.PENDING
            full.reason = None
            full.attempts = 0
            full.max_attempts = self.config.retry_attempts + 1
            full.queued_at = now
            full.started_at = full.finished_at = None
            full.not_before = 0.0
            full.tier = int(full.priority)
            self._enqueue(full)
            self.store.update(full)
            self.host.delete_history(prompt_id)
            self._emit_job(full)
            self.host.queue_changed()
            self.cond.notify_all()
            return full

    def set_dispatch_state(self, state: str) -> None:
        with self.lock:
            self.state = state
            self.store.kv_set("dispatch_state", state)
            log.info("governor is now %s", state)
            self.host.send("governor.status", {"state": state}, None)
            self.cond.notify_all()

    def update_config(self, patch: Any) -> GovernorConfig:
        with self.lock:
            try:
                new = apply_patch(self.config, patch)
            except ConfigError as e:
                raise bad_request("invalid_config", "Invalid governor settings", str(e), errors=e.errors) from None
            self.config_file.save(new)
            self._apply_config(new)
            return new

    def _apply_config(self, new: GovernorConfig) -> None:
        self.config = new
        self.scheduler.set_aging_interval(new.aging_interval)
        self.cond.notify_all()

    def is_admin(self, headers, remote: str | None) -> bool:
        return is_admin(headers, remote, effective_admin_token(self.config))

    # =============================================================================================
    # watchdog
    # =============================================================================================
    def tick(self) -> None:
        """Periodic work: config reload, aging, timeouts, stuck detection, memory peaks, events."""
        with self.lock:
            now = self.clock()
            if self.config_file.changed():
                self._apply_config(self.config_file.load())
                log.info("governor settings reloaded from %s", self.config_file.path)
            promoted = self.scheduler.promote_aged(now)
            for job in promoted:
                self.store.update(job)
            if promoted:
                self.cond.notify_all()
            self._expire_queued(now)
            self._watch_running(now)
            if self.scheduler and any(j.not_before and j.not_before <= now for j in self._retry_heads()):
                self.cond.notify_all()
            self._broadcast_positions(now)

    def _retry_heads(self) -> Iterable[Job]:
        for job in self.scheduler:
            if job.lane != 0:
                break
            yield job

    def _expire_queued(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, prompt_id = heapq.heappop(self._deadlines)
            job = self.jobs.get(prompt_id)
            if job is None or not job.state.queued or job.deadline() != deadline:
                continue  # finished, running, or requeued with a newer deadline
            self.metrics.timeouts.labels("queue").inc()
            log.warning("prompt %s waited %.0f s and timed out in the queue", prompt_id, now - job.queued_at)
            self._fail_unstarted(job, Reason.QUEUE_TIMEOUT,
                                 f"Queue timeout: waited {now - job.queued_at:.0f} s (limit {job.queue_timeout:g} s)")

    def _watch_running(self, now: float) -> None:
        cfg = self.config
        for prompt_id in list(self.running):
            job = self.jobs[prompt_id]
            self._sample_peak(job)
            if (cfg.exec_timeout and job.interrupt_reason is None and job.started_at is not None
                    and now - job.started_at > cfg.exec_timeout):
                job.interrupt_reason = Reason.EXEC_TIMEOUT
                job.interrupted_at = now
                self.metrics.timeouts.labels("exec").inc()
                log.warning("prompt %s ran %.0f s, past exec_timeout %g s: interrupting", prompt_id,
                            now - job.started_at, cfg.exec_timeout)
                self.host.interrupt(prompt_id)
                self._emit_job(job, event="exec_timeout")
            if (job.interrupted_at is not None and job.state is JobState.RUNNING
                    and now - job.interrupted_at > cfg.exec_timeout_grace):
                self.metrics.stuck.inc()
                log.error("prompt %s is STUCK: it did not honour an interrupt within %g s (node still running)",
                          prompt_id, cfg.exec_timeout_grace)
                self._set_state(job, JobState.STUCK)
                self._emit_job(job)

    def _sample_peak(self, job: Job) -> None:
        if job.memory_baseline is None:
            return
        reading = self._read_memory()
        if reading is not None:
            job.peak_memory = max(job.peak_memory or 0, reading.used - job.memory_baseline)

    # =============================================================================================
    # positions, ETA and events
    # =============================================================================================
    def _expected(self, job: Job) -> float | None:
        return self.stats.expected_seconds(job.fingerprint)

    def _running_remaining(self, now: float) -> float:
        remaining = 0.0
        for prompt_id in self.running:
            job = self.jobs[prompt_id]
            expected = self._expected(job)
            if expected is not None and job.started_at is not None:
                # A run that overruns its usual time is not about to end: keep a tenth of it as the estimate.
                remaining = max(remaining, expected - (now - job.started_at), 0.1 * expected)
        return max(0.0, remaining)

    def _etas(self, jobs: Iterable[Job], now: float) -> Iterator[tuple[Job, float | None]]:
        """Each of ``jobs`` (in dispatch order, from the front) with its seconds until start."""
        t: float | None = self._running_remaining(now)
        for job in jobs:
            if t is not None and job.not_before > now:
                t = max(t, job.not_before - now)
            yield job, None if t is None else round(t, 1)
            expected = self._expected(job)
            t = None if (t is None or expected is None) else t + expected

    def _refresh_positions(self, now: float) -> dict[str, tuple[int, float | None]]:
        """Position and ETA (seconds until start) of every queued job: one pass in dispatch order."""
        if self._positions_version == self.scheduler.version and self._positions:
            return self._positions
        self._positions = {job.prompt_id: (position, eta)
                           for position, (job, eta) in enumerate(self._etas(self.scheduler, now), start=1)}
        self._positions_version = self.scheduler.version
        return self._positions

    def _eta_for(self, job: Job, position: int) -> float | None:
        """Seconds until ``job`` starts: from the position table when it is current, else by walking the
        jobs ahead (cheap near the front), else extrapolated from the expected durations."""
        if position <= 0:  # not waiting: running (starts now) or finished
            return 0.0 if job.state.active else None
        now = self.clock()
        if self._positions_version == self.scheduler.version:
            return self._positions.get(job.prompt_id, (0, None))[1]
        if position <= ETA_EXACT_LIMIT:
            walked = list(self._etas(itertools.islice(self.scheduler, position), now))
            return walked[-1][1] if walked else None
        expected = self.stats.expected_seconds(job.fingerprint)
        return None if expected is None else round(self._running_remaining(now) + (position - 1) * expected, 1)

    def _retry_after(self) -> int:
        now = self.clock()
        remaining = self._running_remaining(now)
        if not remaining:
            recent = self.stats.expected_seconds("")
            remaining = recent or 5.0
        return max(1, int(remaining + 0.999))

    def _broadcast_positions(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_broadcast < self.config.event_throttle:
            return
        if self._broadcast_version == self.scheduler.version and not force:
            return
        self._broadcast_version = self.scheduler.version
        self._last_broadcast = now
        positions = self._refresh_positions(now)
        total = len(self.scheduler)
        by_sid: dict[str, dict[str, Any]] = {}
        for prompt_id, (position, eta) in positions.items():
            job = self.jobs[prompt_id]
            if not job.client_id:
                continue
            previous = self._sent.get(prompt_id)
            changed = previous is None or previous[0] != position or _eta_moved(previous[1], eta)
            if changed or self._sent_totals.get(job.client_id) != total:
                by_sid.setdefault(job.client_id, {})[prompt_id] = {"position": position, "eta_s": eta,
                                                                   "state": job.state.value}
                self._sent[prompt_id] = (position, eta)
        for sid, jobs in by_sid.items():
            self._sent_totals[sid] = total
            self.host.send("governor.queue", {"pending": total, "running": len(self.running), "jobs": jobs}, sid)

    def _emit_job(self, job: Job, event: str = "state", **extra: Any) -> None:
        if not job.client_id:
            return
        position = self.scheduler.position(job) if job.prompt_id in self.scheduler else None
        data = {
            "prompt_id": job.prompt_id, "event": event, "state": job.state.value,
            "reason": job.reason.value if job.reason else None, "attempt": job.attempts,
            "max_attempts": job.max_attempts, "priority": job.priority.label, "position": position,
            "pending": len(self.scheduler), "last_error": job.errors[-1] if job.errors else None, **extra,
        }
        self.host.send("governor.job", data, job.client_id)

    def _set_state(self, job: Job, state: JobState, persist: bool = True) -> None:
        job.state = state
        if persist:
            self.store.update(job)

    # =============================================================================================
    # queries
    # =============================================================================================
    def queued_in_order(self) -> list[Job]:
        with self.lock:
            return list(self.scheduler)

    def running_jobs(self) -> list[Job]:
        with self.lock:
            return [self.jobs[p] for p in self.running]

    def job_view(self, job: Job) -> dict[str, Any]:
        with self.lock:
            out = job.summary()
            if job.prompt_id in self.scheduler:
                position = self.scheduler.position(job)
                out["position"] = position
                out["eta_s"] = self._eta_for(job, position)
            else:
                out["position"] = None
                out["eta_s"] = None
            return out

    def list_jobs(self, client_id: str | None = None, state: str | None = None, limit: int = 100,
                  offset: int = 0) -> dict[str, Any]:
        with self.lock:
            queued = list(self.scheduler)
            running = [self.jobs[p] for p in self.running]
            finished = list(reversed(self.finished.values()))
            candidates = running + queued + finished
            if client_id is not None:
                candidates = [j for j in candidates if j.client_id == client_id]
            if state is not None:
                candidates = [j for j in candidates if j.state.value == state]
            page = candidates[offset:offset + limit]
            return {"jobs": [self.job_view(j) for j in page], "total": len(candidates), "offset": offset,
                    "limit": limit}

    def health(self) -> dict[str, Any]:
        """Ready, and the worker thread alive: it asks for work every few seconds unless it is running one."""
        with self.lock:
            seen = None if self.worker_seen is None else round(time.monotonic() - self.worker_seen, 1)
            worker_ok = bool(self.running) or (seen is not None and seen < WORKER_SILENCE_LIMIT)
            return {"ok": self.ready and worker_ok, "ready": self.ready, "worker_seen_s_ago": seen,
                    "running": len(self.running), "pending": len(self.scheduler), "state": self.state,
                    "version": __version__}

    def counts(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for job in self.jobs.values():
            counts[(job.state.value, job.priority.label)] += 1
        return counts

    def status(self, *, can_admin: bool = False) -> dict[str, Any]:
        with self.lock:
            counts = self.counts()
            by_state: Counter[str] = Counter()
            by_priority: Counter[str] = Counter()
            for (state, priority), n in counts.items():
                by_state[state] += n
                if JobState(state).queued:
                    by_priority[priority] += n
            for job in self.finished.values():
                by_state[job.state.value] += 1
            cfg = self.config
            gate = self._last_gate.as_dict() if self._last_gate else None
            reading = self._last_reading or self.probe.read()
            leases = self.leases.in_use(cfg.max_concurrent)
            return {
                "version": __version__,
                "instance": self.instance_id,
                "state": self.state,
                "ready": self.ready,
                "counts": {"by_state": dict(by_state), "pending_by_priority": dict(by_priority),
                           "pending": len(self.scheduler), "running": len(self.running)},
                "running": [self.job_view(self.jobs[p]) for p in self.running],
                "memory": None if reading is None else {"used": reading.used, "total": reading.total,
                                                        "source": reading.source,
                                                        "used_fraction": round(reading.used_fraction, 4)},
                "gate": gate,
                "concurrency": {"limit": cfg.max_concurrent, "in_use": len(leases), "holders": leases},
                "config": {k: v for k, v in cfg.public().items() if k in _SUMMARY_KEYS},
                "can_admin": can_admin,
            }

    def metrics_snapshot(self) -> dict[str, Any]:
        with self.lock:
            reading = self._last_reading
            return {
                "counts": self.counts(),
                "state": self.state,
                "gate_open": self._last_gate.open if self._last_gate else True,
                "stuck": sum(1 for j in self.jobs.values() if j.state is JobState.STUCK),
                "memory": None if reading is None else {"used": reading.used, "total": reading.total,
                                                        "source": reading.source},
                "leases": len(self.leases.in_use(self.config.max_concurrent)),
                "lease_limit": self.config.max_concurrent,
            }

    # =============================================================================================
    # recovery after a restart
    # =============================================================================================
    def load_unfinished(self) -> tuple[list[Job], list[Job]]:
        """What the last run left: (jobs that were running, queued jobs in dispatch order)."""
        return self.store.load_running(), self.store.load_queued()

    def recover(self, running: list[Job], queued: list[Job], invalid: dict[str, str]) -> dict[str, int]:
        """Requeue what the last run left: queued jobs in order, the running ones at the head.

        ``invalid`` maps prompt ids whose prompt no longer validates (a node pack was removed, say)
        to the error; those are recorded as failed with ``invalid_on_restore``.
        """
        validate = invalid.get
        with self.lock:
            now = self.clock()
            summary = {"requeued": 0, "rerun": 0, "invalid": 0, "exhausted": 0}
            for job in self.store.load_finished(self.config.history_retention):
                job.prompt = {}
                self.finished[job.prompt_id] = job
            for job in running:
                if job.attempts >= job.max_attempts:
                    job.errors.append({"attempt": job.attempts, "at": now, "reason": "max_attempts",
                                       "exception_type": None, "node_id": None, "node_type": None,
                                       "message": "the server stopped while this prompt ran, too many times"})
                    self._finalize(job, JobState.FAILED, Reason.MAX_ATTEMPTS)
                    summary["exhausted"] += 1
                    continue
                job.errors.append({"attempt": job.attempts, "at": now, "reason": "server_restart",
                                   "exception_type": None, "node_id": None, "node_type": None,
                                   "message": "the server stopped while this prompt ran; running it again"})
                job.state = JobState.PENDING
                job.started_at = None
                job.queued_at = now
                if self._requeue_recovered(job, validate, head=True):
                    summary["rerun"] += 1
                else:
                    summary["invalid"] += 1
            for job in queued:
                job.state = JobState.PENDING
                job.queued_at = now  # a fresh queue-timeout window after downtime
                if self._requeue_recovered(job, validate, head=False):
                    summary["requeued"] += 1
                else:
                    summary["invalid"] += 1
            self.ready = True
            self.cond.notify_all()
            return summary

    def _requeue_recovered(self, job: Job, validate: Callable[[str], str | None], *, head: bool) -> bool:
        error = validate(job.prompt_id)
        self.jobs[job.prompt_id] = job
        if head:
            self._enqueue(job, head=True)
        else:
            self._enqueue(job, keep_tags=True)
        self.store.update(job)
        if error is not None:
            self._fail_unstarted(job, Reason.INVALID_ON_RESTORE, f"invalid after restart: {error}")
            return False
        return True


_SUMMARY_KEYS = ("max_pending", "max_pending_per_client", "max_concurrent", "queue_timeout", "exec_timeout",
                 "retry_attempts", "memory_gate", "max_used_fraction", "min_free_bytes", "aging_interval",
                 "admin_token_set")


def _eta_moved(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before != after
    return abs(after - before) >= max(2.0, 0.1 * before)
