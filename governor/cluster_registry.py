"""Which ComfyUI servers belong to a cluster, and which of them are alive (heartbeats in Redis).

Keys (prefix ``rg:{cluster}:``):

- ``server:<id>``  HASH: server_id, url, gpu, classes_hash, classes_key, state, running (JSON list
  of prompt ids), slots (JSON), started_at, heartbeat_ms. Expires ``retention`` after the last
  heartbeat, so a server that is gone for good disappears from the list.
- ``servers``  ZSET server id -> last heartbeat (ms, Redis clock)
- ``classes:<hash>``  SET of the node classes a server has; content-addressed (the hash is over the
  sorted class names), so servers with the same packs share it; this is the ``server_classes_key``
  that ``RedisQueue.take`` checks a job's classes against. Kept alive by its servers' heartbeats.
- ``declared:<id>``  marker for ``declare_dead`` of a server that has no record

Heartbeats are stamped with Redis's clock (``TIME`` inside the script), so heartbeat ages do not
depend on the hosts' clocks agreeing. A server is dead when its last heartbeat is older than
``server_timeout``. ``declare_dead`` is atomic and answers True to exactly one caller per death;
that caller requeues the server's running jobs (``RedisQueue.requeue_running_of``, idempotent, so
a rescuer that crashes half-way is repaired by the next one: requeue every server that has running
jobs and is not alive). A declared server that comes back sees ``was_dead`` in its next heartbeat
(its jobs may be running elsewhere: fencing by attempt refuses its late ``finish``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .redis_jobs import key_prefix, load_script, text


@dataclass
class ServerInfo:
    server_id: str
    url: str = ""
    gpu: str = ""
    classes_hash: str = ""
    classes_key: str = ""
    state: str = ""
    running: list[str] = field(default_factory=list)
    slots: Any = None
    started_at: float | None = None
    heartbeat_age: float = 0.0  # seconds since the last heartbeat (Redis clock)
    alive: bool = True

    def summary(self) -> dict[str, Any]:
        """As ``GET /governor/cluster`` shows one server."""
        return {"id": self.server_id, "url": self.url, "gpu": self.gpu, "node_classes_hash": self.classes_hash,
                "state": self.state, "heartbeat_age_s": round(self.heartbeat_age, 3), "alive": self.alive,
                "running": self.running, "slots": self.slots}


@dataclass
class Heartbeat:
    previous_age: float | None  # seconds since the previous heartbeat, None on the first one
    was_dead: bool  # another server declared this one dead since its previous heartbeat


def classes_hash(classes: set[str] | frozenset[str]) -> str:
    return hashlib.sha1("\n".join(sorted(classes)).encode()).hexdigest()[:16]


class ClusterRegistry:
    """Membership of one cluster. ``server_timeout`` seconds without a heartbeat = dead.

    ``retention`` (seconds) is how long a silent server's record stays listed. Methods raise
    ``redis.RedisError`` when Redis cannot be reached.
    """

    def __init__(self, client: Any, cluster: str = "default", *, server_timeout: float = 10.0,
                 retention: float = 3600.0) -> None:
        if server_timeout <= 0:
            raise ValueError("server_timeout must be > 0 seconds")
        self.client = client
        self.prefix = key_prefix(cluster)
        self.server_timeout = server_timeout
        self.retention = max(retention, 3 * server_timeout)
        self._beat = load_script(client, "server_beat", common=False)
        self._list = load_script(client, "server_list", common=False)
        self._declare = load_script(client, "server_declare_dead", common=False)

    def classes_key(self, classes: set[str] | frozenset[str]) -> str:
        return f"{self.prefix}classes:{classes_hash(classes)}"

    def register(self, server_id: str, *, url: str, gpu: str, node_classes: set[str] | frozenset[str],
                 state: str = "running", slots: Any = None) -> str:
        """Join (or rejoin) the cluster; returns the server's classes key for ``RedisQueue.take``.

        A server that restarts with the same id must also requeue what the cluster still thinks it
        runs (``RedisQueue.requeue_running_of(server_id)``): it may come back within the timeout.
        """
        key = self.classes_key(node_classes)
        pipe = self.client.pipeline(transaction=True)
        if node_classes:
            pipe.sadd(key, *sorted(node_classes))
        pipe.pexpire(key, int(self.retention * 1000))
        pipe.execute()
        self._send(server_id, {"url": url, "gpu": gpu, "classes_hash": classes_hash(node_classes), "classes_key": key,
                               "state": state, "running": "[]", "slots": json.dumps(slots),
                               "started_at": repr(time.time())})
        return key

    def heartbeat(self, server_id: str, *, state: str | None = None, running: list[str] | None = None,
                  slots: Any = None) -> Heartbeat:
        """Say this server is alive (one script); the given fields are updated too."""
        fields: dict[str, str] = {}
        if state is not None:
            fields["state"] = state
        if running is not None:
            fields["running"] = json.dumps(running)
        if slots is not None:
            fields["slots"] = json.dumps(slots)
        return self._send(server_id, fields)

    def _send(self, server_id: str, fields: dict[str, str]) -> Heartbeat:
        flat = [x for pair in fields.items() for x in pair]
        age_ms, was_dead = self._beat(keys=[self.prefix + "servers"],
                                      args=[self.prefix, server_id, int(self.retention * 1000), *flat])
        return Heartbeat(None if int(age_ms) < 0 else int(age_ms) / 1000, bool(int(was_dead)))

    def deregister(self, server_id: str) -> None:
        """Leave cleanly (shutdown): the server no longer shows up."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.prefix + "servers", server_id)
        pipe.delete(f"{self.prefix}server:{server_id}")
        pipe.execute()

    def servers(self) -> list[ServerInfo]:
        """Every known server with its heartbeat age (seconds) and whether it counts as alive."""
        out = []
        for flat, age_ms in self._list(keys=[self.prefix + "servers"], args=[self.prefix]):
            raw = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
            age = int(age_ms) / 1000
            out.append(ServerInfo(
                server_id=raw.get("server_id", ""), url=raw.get("url", ""), gpu=raw.get("gpu", ""),
                classes_hash=raw.get("classes_hash", ""), classes_key=raw.get("classes_key", ""),
                state=raw.get("state", ""), running=json.loads(raw.get("running") or "[]"),
                slots=json.loads(raw.get("slots") or "null"),
                started_at=float(raw["started_at"]) if raw.get("started_at") else None,
                heartbeat_age=age, alive=age <= self.server_timeout and raw.get("state") != "dead"))
        return out

    def alive_ids(self) -> set[str]:
        return {s.server_id for s in self.servers() if s.alive}

    def dead_servers(self) -> list[str]:
        """Servers whose last heartbeat is older than ``server_timeout`` (or declared dead)."""
        return [s.server_id for s in self.servers() if not s.alive]

    def declare_dead(self, server_id: str) -> bool:
        """Atomically mark a silent server dead; True for exactly one caller (it requeues the jobs)."""
        reply = self._declare(keys=[self.prefix + "servers"],
                              args=[self.prefix, server_id, int(self.server_timeout * 1000)])
        return bool(int(reply))
