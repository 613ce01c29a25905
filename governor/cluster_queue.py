"""``ClusterQueue``: the governor's queue when several servers share it in Redis (cluster mode).

The verb modules call this instead of their local queue structures when ``Runtime.cluster`` is
set; the single-server path never touches it. It owns the translation between the governor's
``Job`` and the Redis record (``QueuedJob`` + a JSON payload), the cluster-wide admission counts
and idempotency records, the shared control record (dispatch state and settings, with a version
every server polls), the cancel requests for jobs running elsewhere, and the outbox of attempt
ends that could not be reported while Redis was unreachable.

Keys it adds to ``redis_queue``'s (prefix ``rg:{cluster}:``): ``control`` HASH (state,
config JSON, version), ``cancel`` SET (prompt ids whose running attempt must stop),
``idem:<key>`` STRING (an idempotency record, expires), ``where:<prompt_id>`` HASH
(origin_server, server, summary JSON of the final state; see ``cluster_context``).

Errors: every method that talks to Redis raises ``redis.RedisError`` when it cannot; ``unavailable``
turns that into the 503 that ``/prompt`` answers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from .cluster_context import WHERE_TTL, ClusterContext, index_finished, where_key
from .config import GovernorConfig
from .errors import GovernorError
from .jobs import Job, JobState, Priority, Reason
from .redis_jobs import QueuedJob, text
from .redis_queue import RedisQueue

log = logging.getLogger("restoration_governor.cluster")

SHARED_SETTINGS = frozenset(f.name for f in dataclasses.fields(GovernorConfig) if not f.metadata["secret"])
FAIL_FAST = 1.0  # seconds after a failed call during which admissions answer 503 without trying Redis
RETRY_AFTER_REDIS_DOWN = 5  # seconds a client is told to wait while Redis is unreachable
_PAYLOAD_FIELDS = ("prompt", "extra_data", "outputs", "client_id", "created_at", "max_attempts", "queue_timeout",
                   "number", "fingerprint", "idempotency_key", "errors", "sensitive")


def shared_config(config: GovernorConfig) -> dict[str, Any]:
    """The settings every server of a cluster shares (secrets stay on each server)."""
    return {k: v for k, v in config.to_file().items() if k in SHARED_SETTINGS}


def unavailable(error: Exception) -> GovernorError:
    """The 503 (ComfyUI's error shape, ``Retry-After``) for a request that needs Redis while it is down."""
    return GovernorError(503, "cluster_unavailable", "The shared queue (Redis) is unreachable",
                         f"{type(error).__name__}: {error}; nothing was queued, retry in about "
                         f"{RETRY_AFTER_REDIS_DOWN} s", {"retry_after_s": RETRY_AFTER_REDIS_DOWN},
                         headers={"Retry-After": str(RETRY_AFTER_REDIS_DOWN)})


def encode(job: Job, origin: str) -> QueuedJob:
    """The Redis record of a job being admitted (or re-queued by a retry)."""
    payload = {name: getattr(job, name) for name in _PAYLOAD_FIELDS}
    payload["priority"] = job.priority.label
    return QueuedJob(prompt_id=job.prompt_id, fair_key=job.fair_key, priority=int(job.priority), tier=job.tier,
                     queued_at=job.queued_at, not_before=job.not_before, node_classes=node_classes(job.prompt),
                     max_attempts=job.max_attempts, attempt=job.attempts, queue_timeout=job.queue_timeout or 0.0,
                     payload=json.dumps(payload, separators=(",", ":"), default=str), origin_server=origin)


def decode(q: QueuedJob) -> Job:
    """The governor's job from its Redis record (state pending or running, attempts = Redis's)."""
    p = json.loads(q.payload or "{}")
    return Job(prompt_id=q.prompt_id, seq=int(q.seq or 0), prompt=p.get("prompt") or {},
               extra_data=p.get("extra_data") or {}, outputs=list(p.get("outputs") or []),
               client_id=p.get("client_id"), fair_key=q.fair_key, priority=Priority(q.priority),
               created_at=float(p.get("created_at") or q.queued_at), queued_at=q.queued_at,
               max_attempts=int(p.get("max_attempts") or q.max_attempts or 1), queue_timeout=p.get("queue_timeout"),
               state=JobState.RUNNING if q.state == "running" else JobState.PENDING,
               number=float(p.get("number") or 0), tier=int(q.tier or 0), lane=q.lane, vstart=q.vstart,
               attempts=q.attempt, not_before=q.not_before, started_at=q.started_at,
               errors=list(p.get("errors") or []), fingerprint=p.get("fingerprint") or "",
               idempotency_key=p.get("idempotency_key"), sensitive=dict(p.get("sensitive") or {}))


def retry_source(job: Job) -> str | None:
    """What a retry of a failed or cancelled job needs (JSON), or None for any other state."""
    if job.state not in (JobState.FAILED, JobState.CANCELLED) or not job.prompt:
        return None
    return json.dumps({"fair_key": job.fair_key, "priority": int(job.priority), "payload": encode(job, "").payload},
                      separators=(",", ":"))


def from_summary(prompt_id: str, s: dict[str, Any]) -> Job:
    """A finished job as another server recorded it (``Job.summary()``), for views and find."""
    return Job(prompt_id=prompt_id, seq=0, prompt={}, extra_data={}, outputs=[], client_id=s.get("client_id"),
               fair_key=s.get("client_id") or "", priority=Priority.parse(s.get("priority", "normal")),
               tier=int(Priority.parse(s.get("effective_priority") or s.get("priority", "normal"))),
               created_at=s.get("created_at") or 0.0, queued_at=s.get("queued_at") or 0.0,
               max_attempts=s.get("max_attempts") or 1, queue_timeout=s.get("queue_timeout"),
               state=JobState(s.get("state", "success")), attempts=s.get("attempts") or 0,
               started_at=s.get("started_at"), finished_at=s.get("finished_at"),
               reason=Reason(s["reason"]) if s.get("reason") else None, errors=list(s.get("errors") or []),
               fingerprint=s.get("fingerprint") or "", exec_seconds=s.get("exec_seconds"))


def node_classes(prompt: dict[str, Any]) -> frozenset[str]:
    """Every node class a prompt uses (a server must have all of them to take it)."""
    return frozenset(str(n["class_type"]) for n in prompt.values() if isinstance(n, dict) and "class_type" in n)


class ClusterQueue:
    """One server's handle on the cluster's shared queue. ``classes_key`` is set by ``register``."""

    def __init__(self, ctx: ClusterContext, *, aging_interval: float, gpu: str,
                 classes: frozenset[str] = frozenset(), clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock  # the governor's wall clock (pause start and end are read on it)
        self.redis = ctx.redis
        self.prefix = ctx.prefix
        self.server_id = ctx.server_id
        self.rq = RedisQueue(ctx.redis, ctx.cluster, aging_interval=aging_interval)
        self.gpu = gpu
        self.classes = classes
        self.classes_key = ""
        self.attempts: dict[str, int] = {}  # prompt id -> the fencing attempt this server runs
        self.outbox: list[tuple[str, str, int, dict[str, Any]]] = []  # (op, prompt id, attempt, data) unsent
        self._ops = {"finish": self._finish, "retry": self._retry}
        self.control_version = -1  # the shared control record's version last applied here
        self.reachable = True
        self.failed_at = 0.0  # wall-clock time a call last found Redis unreachable
        self.rescue_after = time.time() + ctx.registry.server_timeout  # (re)connected: let others beat first
        self.alive_count = 1  # live servers at the last maintenance pass (ETAs divide the work by it)
        self.last_maintenance = 0.0

    def key(self, suffix: str) -> str:
        return self.prefix + suffix

    # -- membership ---------------------------------------------------------------------------------
    def register(self, state: str, slots: Any = None) -> list[QueuedJob]:
        """Join the cluster; requeue what Redis still thinks this server runs (a restart). Returns
        the jobs that exhausted their attempts (the caller records them failed)."""
        self.classes_key = self.ctx.registry.register(self.server_id, url=self.ctx.public_url, gpu=self.gpu,
                                                      node_classes=self.classes, state=state, slots=slots)
        return self.rq.requeue_running_of(self.server_id, time.time()).exhausted

    # -- admission ----------------------------------------------------------------------------------
    def depths(self, fair_key: str) -> tuple[int, int]:
        """(pending jobs in the cluster, pending jobs of ``fair_key``): one pipelined round trip.
        Raises ConnectionError at once within ``FAIL_FAST`` seconds of a failed call (a partitioned
        Redis would otherwise hold each request for the socket timeout)."""
        if not self.reachable and time.time() - self.failed_at < FAIL_FAST:
            raise ConnectionError("Redis was unreachable a moment ago")
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.key("pending"))
        pipe.hget(self.key("clients"), fair_key)
        try:
            total, mine = pipe.execute()
        except Exception:
            self.failed_at = time.time()
            raise
        return int(total or 0), int(mine or 0)

    def push(self, job: Job, *, head: bool = False) -> None:
        """Queue ``job`` for every server; assigns its seq and fair-share tags (one script)."""
        q = self.rq.push(encode(job, self.server_id), head=head)
        job.seq, job.lane, job.vstart = int(q.seq or 0), q.lane, q.vstart

    def seen(self, prompt_id: str) -> bool:
        """The cluster knows this prompt: queued, running, or ended within ``WHERE_TTL``."""
        return bool(self.redis.exists(self.key("job:" + prompt_id), where_key(self.prefix, prompt_id)))

    known = seen  # whether a queued, running or finished (``where:`` record, kept 7 days) job has this id

    def idempotency_get(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("idem:" + key))
        return None if raw is None else json.loads(text(raw))

    def idempotency_put(self, key: str, record: dict[str, Any], ttl: float) -> None:
        self.redis.set(self.key("idem:" + key), json.dumps(record, default=str), px=max(1, int(ttl * 1000)))

    # -- dispatch and outcomes ----------------------------------------------------------------------
    def take(self, now: float, expect: str = "") -> Job | None:
        """The globally next job this server can run (``expect``: only if it is that one), marked
        running here; None if there is none."""
        q = self.rq.take(self.server_id, self.classes_key, now, expect=expect)
        if q is None:
            return None
        self.attempts[q.prompt_id] = q.attempt
        job = decode(q)
        job.started_at = now
        return job

    def finished(self, job: Job) -> bool:
        """Report the final state of a job run here (fenced); queued in the outbox while Redis is down.
        False when the attempt was fenced off (this server was declared dead and the job moved on)."""
        return self._send("finish", job, {"summary": job.summary(), "retry": retry_source(job)})

    def _send(self, op: str, job: Job, data: dict[str, Any]) -> bool:
        """Send an attempt's end (``finish`` / ``retry``, fenced by its attempt number); while Redis is
        unreachable it waits in the outbox for ``flush`` and counts as sent."""
        attempt = self.attempts.pop(job.prompt_id, job.attempts)
        try:
            return self._ops[op](job.prompt_id, attempt, data)
        except Exception as e:
            log.warning("could not send the %s of %s to Redis (%s); will retry", op, job.prompt_id, e)
            self.outbox.append((op, job.prompt_id, attempt, data))
            return True

    def _finish(self, prompt_id: str, attempt: int, data: dict[str, Any]) -> bool:
        ok = self.rq.finish(prompt_id, attempt, summary=json.dumps(data["summary"], default=str),
                            retry=data["retry"] or "")  # one script: fenced end + the summary
        if ok:
            index_finished(self.redis.pipeline(transaction=False), self.prefix, prompt_id,
                           data["summary"].get("finished_at")).execute()
        else:
            log.warning("the end of %s (attempt %d) was refused: it was requeued after this server was declared "
                        "dead", prompt_id, attempt)
        return ok

    def record_summary(self, prompt_id: str, summary: dict[str, Any], retry: str | None = None) -> None:
        """Keep a job's final state for every server (``retry``: what a retry from any server needs)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(where_key(self.prefix, prompt_id), "summary", json.dumps(summary, default=str))
        if retry:
            pipe.hset(where_key(self.prefix, prompt_id), "retry", retry)
        pipe.pexpire(where_key(self.prefix, prompt_id), int(WHERE_TTL * 1000))
        index_finished(pipe, self.prefix, prompt_id, summary.get("finished_at")).execute()

    def retried(self, job: Job, not_before: float, now: float) -> bool:
        """Send the running attempt back to the head of its tier (fenced); payload keeps its errors."""
        return self._send("retry", job, {"not_before": not_before, "payload": encode(job, "").payload})

    def _retry(self, prompt_id: str, attempt: int, data: dict[str, Any]) -> bool:
        if not self.rq.retry(prompt_id, attempt, not_before=data["not_before"], now=time.time()):
            return False
        self.redis.hset(self.key("job:" + prompt_id), "payload", data["payload"])
        return True

    def flush(self) -> None:
        """Send the attempt ends that waited for Redis (called by the maintenance tick)."""
        while self.outbox:
            op, prompt_id, attempt, data = self.outbox[0]
            self._ops[op](prompt_id, attempt, data)
            self.outbox.pop(0)

    # -- reads --------------------------------------------------------------------------------------
    def lookup(self, prompt_id: str) -> Job | None:
        """A job anywhere in the cluster: queued or running (its record), or finished (its summary)."""
        q = self.rq.get(prompt_id)
        if q is not None:
            return decode(q)
        raw = self.redis.hget(where_key(self.prefix, prompt_id), "summary")
        return None if raw is None else from_summary(prompt_id, json.loads(text(raw)))

    def retry_source(self, prompt_id: str) -> Job | None:
        """A failed or cancelled job as it was admitted (prompt included), for a retry from any server."""
        raw = self.redis.hget(where_key(self.prefix, prompt_id), "retry")
        if raw is None:
            return None
        r = json.loads(text(raw))
        return decode(QueuedJob(prompt_id=prompt_id, fair_key=r["fair_key"], priority=int(r["priority"]),
                                payload=r["payload"]))

    def running_elsewhere(self) -> dict[str, str]:
        return self.rq.running()

    # -- control ------------------------------------------------------------------------------------
    def publish_control(self, **fields: Any) -> None:
        """Set the shared dispatch state and/or settings; every server applies them within a tick.
        The state goes through ``RedisQueue.set_state`` (a resume gives the held jobs their time back)."""
        if "state" in fields:
            self.rq.set_state(json.dumps(fields.pop("state")), self.clock())
        if not fields:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key("control"), mapping={k: json.dumps(v) for k, v in fields.items()})
        pipe.hincrby(self.key("control"), "version", 1)
        pipe.execute()

    def read_control(self) -> dict[str, Any] | None:
        """The shared control record when its version changed since the last read, else None."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.key("control")).items()}
        version = int(raw.pop("version", 0))
        if version == self.control_version:
            return None
        self.control_version = version
        return {k: json.loads(v) for k, v in raw.items()}

    def request_cancel(self, prompt_id: str) -> None:
        self.redis.sadd(self.key("cancel"), prompt_id)

    def cancels_for(self, prompt_ids: list[str]) -> list[str]:
        """Which of the jobs running here another server asked to cancel (and forget the requests)."""
        if not prompt_ids:
            return []
        flags = self.redis.smismember(self.key("cancel"), prompt_ids)
        hits = [p for p, hit in zip(prompt_ids, flags, strict=True) if hit]
        if hits:
            self.redis.srem(self.key("cancel"), *hits)
        return hits
