"""A queued job as the Redis cluster queue stores it, the key prefix, and the Lua script loader.

Redis holds only what ordering, dispatch and fencing need, plus one opaque ``payload`` string the
governor fills (the prompt, extra data, its own job fields as JSON). Numbers are written with
``repr`` so that a float read back by Lua (``tonumber``) or Python is the same double.

Job hash ``rg:{cluster}:job:<prompt_id>`` fields:

=============  ========================================================================
prompt_id      the prompt id
seq            admission order, unique per cluster (``INCR rg:{cluster}:seq`` unless given)
fair_key       the client for fair share
priority       requested tier (0 high, 1 normal, 2 low); aging never changes it
tier           current tier (aging lowers it below ``priority``)
lane / vstart  0 = head lane (retries, crash reruns), 1 = fair-share lane; start tag (integer)
member         the job's member in the pending sorted sets ('' while running)
queued_at      wall-clock seconds it (re)entered the queue; aging counts from here
not_before     wall-clock seconds before which no server takes it (retry backoff)
sig / classes  hash of its sorted node classes / the classes, newline-separated
attempt        attempts started so far; the running attempt's fencing token
max_attempts   crash-rerun cap (0 = none)
state          pending | running
server         the server running it ('' while pending); started_at when it was taken
queue_timeout  seconds it may wait from ``queued_at`` (absent = none); ``deadlines`` ZSET indexes
               pending jobs by ``queued_at + queue_timeout``
origin_server  the server that admitted it (also kept in ``where:<prompt_id>`` with ``server``,
               for 7 days after the job ended: ``cluster_context.ClusterContext``)
payload        opaque to Redis
=============  ========================================================================
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPTS_DIR = Path(__file__).with_name("redis_scripts")
MAX_TAG = 10**15 - 1  # vstart and seq are written as 15 decimal digits in the sort key


def key_prefix(cluster: str) -> str:
    """``rg:{cluster}:`` -- the braces are a Redis Cluster hash tag: one cluster's keys share a slot."""
    if not cluster or any(c in cluster for c in "{}\n ") or len(cluster) > 64:
        raise ValueError(f"invalid cluster name {cluster!r}: use 1-64 characters without braces or spaces")
    return f"rg:{{{cluster}}}:"


def load_script(client: Any, name: str, *, common: bool = True) -> Any:
    """Register ``[common.lua +] <name>.lua`` (EVALSHA, with EVAL on NOSCRIPT after a Redis restart)."""
    source = (SCRIPTS_DIR / f"{name}.lua").read_text()
    if common:
        source = (SCRIPTS_DIR / "common.lua").read_text() + "\n" + source
    return client.register_script(source)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def classes_signature(classes: frozenset[str]) -> tuple[str, str]:
    """``(sig, newline-joined sorted classes)``; the sig names the job's class queue."""
    joined = "\n".join(sorted(classes))
    return hashlib.sha1(joined.encode()).hexdigest()[:16], joined


@dataclass
class QueuedJob:
    """One job in the cluster queue. Times are wall-clock seconds; tags are integers."""

    prompt_id: str
    fair_key: str
    priority: int = 1
    tier: int | None = None  # None = ``priority``
    queued_at: float = 0.0
    seq: int | None = None  # None = assigned by Redis at push
    lane: int = 1
    vstart: int = 0
    not_before: float = 0.0
    node_classes: frozenset[str] = field(default_factory=frozenset)
    max_attempts: int = 0
    attempt: int = 0
    state: str = "pending"
    server: str = ""
    started_at: float | None = None
    payload: str = ""
    origin_server: str = ""  # the server that admitted it ('' = not recorded)
    queue_timeout: float = 0.0  # seconds it may wait from ``queued_at`` (0 = none): index ``deadlines``

    def __post_init__(self) -> None:
        if self.tier is None:
            self.tier = self.priority

    def sort_key(self) -> tuple[int, int, int, int]:
        return (int(self.tier or 0), self.lane, self.vstart, int(self.seq or 0))

    def hash_fields(self) -> list[str]:
        """Field/value pairs for the job hash (prompt_id and seq are written by the push script)."""
        sig, joined = classes_signature(self.node_classes)
        values = {"fair_key": self.fair_key, "priority": int(self.priority), "tier": int(self.tier or 0),
                  "queued_at": repr(float(self.queued_at)), "not_before": repr(float(self.not_before)),
                  "sig": sig, "classes": joined, "max_attempts": int(self.max_attempts),
                  "attempt": int(self.attempt), "payload": self.payload}
        if self.origin_server:
            values["origin_server"] = self.origin_server
        if self.queue_timeout:
            values["queue_timeout"] = repr(float(self.queue_timeout))
        return [str(x) for pair in values.items() for x in pair]

    @classmethod
    def from_flat(cls, flat: list[Any]) -> QueuedJob:
        """From a flat ``[field, value, ...]`` reply (HGETALL, or the scripts' job lists)."""
        raw = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
        classes = raw.get("classes", "")
        started = raw.get("started_at")
        return cls(prompt_id=raw["prompt_id"], fair_key=raw.get("fair_key", ""),
                   priority=int(raw.get("priority", 1)), tier=int(raw.get("tier", 1)),
                   queued_at=float(raw.get("queued_at", 0)), seq=int(raw.get("seq", 0)),
                   lane=int(raw.get("lane", 1)), vstart=int(raw.get("vstart", 0)),
                   not_before=float(raw.get("not_before", 0)),
                   node_classes=frozenset(classes.split("\n")) if classes else frozenset(),
                   max_attempts=int(raw.get("max_attempts", 0)), attempt=int(raw.get("attempt", 0)),
                   state=raw.get("state", "pending"), server=raw.get("server", ""),
                   started_at=float(started) if started else None, payload=raw.get("payload", ""),
                   origin_server=raw.get("origin_server", ""), queue_timeout=float(raw.get("queue_timeout") or 0))
