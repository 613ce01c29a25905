"""The pending queue of one cluster in Redis, in exactly ``FairScheduler``'s order, plus fenced running jobs.

Order (as ``governor/scheduler.py``): tier, then lane (0 = head lane for retries and crash reruns,
in the order they were requeued; 1 = fair share), then the start-time fair-queuing tag ``vstart``
(per tier virtual time ``V`` and per client finish tags ``F``, both in Redis), then admission seq.
Aging lowers a waiting job's tier by one every ``aging_interval`` seconds, as a new arrival there.

Encoding of the order: every pending job is a member of the sorted set ``pending`` with score 0
and member ``T L VVVVVVVVVVVVVVV SSSSSSSSSSSSSSS <prompt_id>`` (tier and lane one digit each, vstart
and seq 15 zero-padded decimal digits). Equal scores sort by member bytes (memcmp), so ZRANK is the
0-based position, exactly, in O(log n). A score encoding would not do: a double has 53 bits of
mantissa, too few for tier + lane + vstart + seq without rounding ties away.

Keys (prefix ``rg:{cluster}:``; several clusters can share one Redis):

- ``pending``  ZSET, the whole order (position, page, length)
- ``q:<sig>``  ZSET, the same members split by the job's node-class signature; ``sigs`` HASH
  sig -> classes of the non-empty ones. ``take`` looks at the head of each signature's queue
  (skipping retries still in backoff), so dispatch costs O(S log n) for S distinct class sets,
  however many jobs a server cannot run sit in front.
- ``aging:<steps>``  ZSET score = queued_at, member = 15-digit seq + prompt id, of jobs in a tier
  above 0 that will be promoted at ``queued_at + steps * aging_interval`` (independent of the
  interval, so changing it needs no rebuild)
- ``vt`` HASH tier -> V; ``fin:<tier>`` HASH client -> F; ``headctr`` head-lane counter; ``seq``
- ``job:<prompt_id>`` HASH (fields in ``redis_jobs``); ``running`` HASH prompt id -> server;
  ``srv:<server>:running`` SET of the prompt ids running there

Guarantees: each operation is one Lua script (one round trip, atomic: no other command runs in
between), so two servers never take the same job and a job is always in exactly one of pending,
running or gone. ``attempt`` is the fencing token of a running job: ``finish``/``retry`` with an
older attempt (a server declared dead that came back) are refused. Aging order differs from
``FairScheduler`` only if ``promote_aged`` is called less often than once per ``aging_interval``
after a priority change (the in-memory heap then keeps a stale duplicate entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .redis_jobs import MAX_TAG, QueuedJob, key_prefix, load_script, text

_SCRIPTS = ("push", "take", "remove", "requeue", "promote", "page", "finish", "retry", "requeue_running",
            "position", "control_state", "expire")


@dataclass
class RequeueResult:
    requeued: list[QueuedJob] = field(default_factory=list)  # back at the head of their tier
    exhausted: list[QueuedJob] = field(default_factory=list)  # attempt >= max_attempts: deleted, record them


class RedisQueue:
    """The cluster's shared queue. ``client`` is a ``redis.Redis`` (either ``decode_responses``).

    Errors: every method raises ``redis.RedisError`` (``ConnectionError``, ``TimeoutError``) when
    Redis cannot be reached; a script is applied completely or not at all. A timeout after the
    request was sent leaves it unknown whether it ran: pushing the same prompt id again answers
    KeyError if it did.
    """

    def __init__(self, client: Any, cluster: str = "default", *, aging_interval: float = 0.0) -> None:
        self.client = client
        self.cluster = cluster
        self.prefix = key_prefix(cluster)
        self.aging_interval = aging_interval
        self._scripts = {name: load_script(client, name) for name in _SCRIPTS}

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](keys=[self.prefix + "pending"], args=[self.prefix, *args])

    def _key(self, suffix: str) -> str:
        return self.prefix + suffix

    # -- pending ----------------------------------------------------------------------------------
    def push(self, job: QueuedJob, *, head: bool = False, keep_tags: bool = False) -> QueuedJob:
        """Queue ``job`` at ``job.tier``: a new arrival (fair lane), the head lane, or with its own tags.

        Assigns ``seq`` when it is None, and ``lane``/``vstart`` (unless ``keep_tags``), atomically
        from the cluster's counters; returns ``job`` updated. Raises KeyError if the prompt id is
        already known to the cluster (pending or running), ValueError for tags out of range.
        """
        mode = "keep" if keep_tags else "head" if head else "fair"
        if keep_tags and (job.vstart != int(job.vstart) or not 0 <= job.vstart <= MAX_TAG or job.lane not in (0, 1)):
            raise ValueError(f"{job.prompt_id}: lane {job.lane} / vstart {job.vstart} cannot be kept")
        if job.seq is not None and not 0 < job.seq <= MAX_TAG:
            raise ValueError(f"{job.prompt_id}: seq {job.seq} out of range")
        if not 0 <= int(job.tier or 0) <= 9:
            raise ValueError(f"{job.prompt_id}: tier {job.tier} out of range")
        reply = self._run("push", job.prompt_id, mode, "" if job.seq is None else str(int(job.seq)),
                          str(job.lane), str(int(job.vstart)), *job.hash_fields())
        if not reply:
            raise KeyError(f"{job.prompt_id} is already queued or running")
        job.seq, job.lane, job.vstart = (int(x) for x in reply)
        job.state, job.server = "pending", ""
        return job

    def take(self, server_id: str, server_classes_key: str, now: float, *, expect: str = "") -> QueuedJob | None:
        """Atomically take the first job in order that ``server_id`` may run now, or None.

        Eligible: ``not_before <= now`` and every node class of the job is in the SET
        ``server_classes_key`` ('' = the server runs every class). The job is marked running on the
        server with ``attempt`` incremented (its fencing token) and its tier's V advanced.
        ``expect``: take only if that prompt id is still the one chosen (a ``peek`` went before);
        None otherwise. None while the cluster is paused.
        """
        reply = self._run("take", server_id, server_classes_key, repr(float(now)), "take", expect)
        return QueuedJob.from_flat(reply) if reply else None

    def peek(self, server_id: str, server_classes_key: str, now: float) -> QueuedJob | None:
        """The job ``take`` would take now, unchanged (the memory gate looks at it first), or None."""
        reply = self._run("take", server_id, server_classes_key, repr(float(now)), "peek", "")
        return QueuedJob.from_flat(reply) if reply else None

    def set_state(self, state: str, now: float) -> float:
        """Set the cluster's dispatch state (``state``: JSON text) in ``control``, bumping its version.

        Pausing records when the pause began; leaving it moves every pending job's ``queued_at``,
        deadline and aging entry by the seconds held (each keeps the queue time it had left), once
        and atomically however many servers resume. Returns the seconds held (0.0 if none)."""
        return float(self._run("control_state", state, repr(float(now))))

    def remove(self, prompt_id: str) -> QueuedJob | None:
        """Delete a pending job (cancel); None if it is not pending."""
        reply = self._run("remove", prompt_id)
        return QueuedJob.from_flat(reply) if reply else None

    def requeue(self, prompt_id: str, tier: int, *, priority: int | None = None) -> bool:
        """Move a pending job to ``tier`` as a new arrival there (priority change); False if not pending."""
        reply = self._run("requeue", prompt_id, str(int(tier)), "" if priority is None else str(int(priority)))
        return bool(reply)

    def promote_aged(self, now: float) -> list[str]:
        """Promote every job whose wait earned it a higher tier; the prompt ids, once per promotion."""
        return [text(p) for p in self._run("promote", repr(float(now)), repr(float(self.aging_interval)))]

    def position(self, prompt_id: str) -> int | None:
        """1-based position among pending jobs (ZRANK, O(log n), one script); None if not pending."""
        rank = self._run("position", prompt_id)
        return None if rank is None or rank is False else int(rank) + 1

    def page(self, offset: int = 0, limit: int = 50, *, payload: bool = False) -> list[QueuedJob]:
        """Pending jobs ``offset .. offset+limit-1`` in dispatch order (O(log n + limit), one script)."""
        if limit <= 0:
            return []
        reply = self._run("page", str(int(offset)), str(int(limit)), "1" if payload else "0")
        return [QueuedJob.from_flat(flat) for flat in reply]

    def expire(self, now: float, limit: int = 50) -> list[QueuedJob]:
        """Delete and return the pending jobs whose queue timeout passed (``deadlines`` ZSET,
        O(log n + limit), one script); none while the cluster is paused (the clock is held)."""
        return [QueuedJob.from_flat(flat) for flat in self._run("expire", repr(float(now)), str(int(limit)))]

    def get(self, prompt_id: str) -> QueuedJob | None:
        """The job (pending or running), or None."""
        flat = self.client.hgetall(self._key("job:" + prompt_id))
        if not flat:
            return None
        return QueuedJob.from_flat([x for pair in flat.items() for x in pair])

    def __len__(self) -> int:
        return int(self.client.zcard(self._key("pending")))

    def __contains__(self, prompt_id: str) -> bool:
        """True while the job is pending."""
        return text(self.client.hget(self._key("job:" + prompt_id), "state") or "") == "pending"

    # -- running (fenced) -------------------------------------------------------------------------
    def finish(self, prompt_id: str, attempt: int, *, summary: str = "", retry: str = "") -> bool:
        """End a running job's attempt (success or final failure). False if ``attempt`` is stale.

        ``summary`` / ``retry`` (JSON) are kept in ``where:<prompt_id>`` in the same script.
        """
        return bool(self._run("finish", prompt_id, str(int(attempt)), summary, retry))

    def retry(self, prompt_id: str, attempt: int, *, not_before: float, now: float) -> bool:
        """Send a running attempt back to the head of its tier (retry backoff). False if stale."""
        return bool(self._run("retry", prompt_id, str(int(attempt)), repr(float(not_before)), repr(float(now))))

    def requeue_running_of(self, server_id: str, now: float) -> RequeueResult:
        """Requeue every job running on a dead server at the head of its tier (next take = attempt + 1).

        Jobs whose ``attempt`` reached their ``max_attempts`` are deleted and returned as exhausted
        so the caller records them failed. Idempotent: a second call finds nothing.
        """
        requeued, exhausted = self._run("requeue_running", server_id, repr(float(now)))
        return RequeueResult([QueuedJob.from_flat(f) for f in requeued], [QueuedJob.from_flat(f) for f in exhausted])

    def running(self) -> dict[str, str]:
        """prompt id -> server id of every running job (one HGETALL; the running set is small)."""
        return {text(k): text(v) for k, v in self.client.hgetall(self._key("running")).items()}

    def running_on(self, server_id: str) -> set[str]:
        return {text(p) for p in self.client.smembers(self._key(f"srv:{server_id}:running"))}
