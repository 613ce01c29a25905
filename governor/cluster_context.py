"""``ClusterContext``: which Redis, which cluster, and who this server is (cluster mode only).

Built once at start-up from the environment (``from_env``); ``None`` means single-server mode.
Every cluster module (queue backend, rescue loop, relay of events and history) takes its Redis
client, key prefix and server id from here.

Environment:

- ``GOVERNOR_REDIS_URL``  e.g. ``redis://127.0.0.1:6379/0``; unset (and no ``redis_url`` in the
  config file) = single-server mode
- ``GOVERNOR_CLUSTER``  cluster name (default ``default``; several clusters may share one Redis)
- ``GOVERNOR_PUBLIC_URL``  the URL other servers reach this one at (default: ComfyUI's listen
  address and port, ``http://<host>:<port>``; ``0.0.0.0``/``::`` become this host's name)
- ``GOVERNOR_SERVER_ID``  stable id; default derived from host name and port, then persisted in
  ``<state_dir>/server_id.<port>`` so a restart keeps it
- ``GOVERNOR_SERVER_TIMEOUT``  seconds without a heartbeat after which a server counts as dead and
  its running job is requeued elsewhere (default 10)

Where a job is (fields of ``rg:{cluster}:job:<prompt_id>`` while queued or running, and of
``rg:{cluster}:where:<prompt_id>`` for ``where_ttl`` seconds after it ended):
``origin_server`` = the server that admitted it, ``server`` = the one running it / that ran it last.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cluster_registry import ClusterRegistry
from .redis_jobs import key_prefix, text

WHERE_TTL = 7 * 86400.0  # seconds the origin/server of an ended job stay readable


FINISHED_KEY = "finished"  # ZSET prompt id -> finished_at: recently finished ids (``cluster_listing``)
FINISHED_CAP = 5000  # ids the index keeps (older finished jobs: ``/governor/jobs/{id}`` still finds them)


def index_finished(pipe: Any, prefix: str, prompt_id: str, finished_at: float | None) -> Any:
    """Queue on ``pipe`` the commands that add ``prompt_id`` to the capped index; returns ``pipe``."""
    pipe.zadd(prefix + FINISHED_KEY, {prompt_id: float(finished_at or 0.0)})
    pipe.zremrangebyrank(prefix + FINISHED_KEY, 0, -FINISHED_CAP - 1)
    return pipe


def where_key(prefix: str, prompt_id: str) -> str:
    return f"{prefix}where:{prompt_id}"


@dataclass
class ClusterContext:
    redis: Any  # redis.Redis
    cluster: str
    prefix: str  # ``rg:{cluster}:``
    server_id: str
    public_url: str
    registry: ClusterRegistry

    def describe(self) -> str:
        """``Redis cluster 'name' at host:port/db, server 'id'`` for logs (never the password)."""
        kw = getattr(getattr(self.redis, "connection_pool", None), "connection_kwargs", {}) or {}
        where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        return f"Redis cluster {self.cluster!r} at {where}/{kw.get('db', 0)}, server {self.server_id!r}"

    def _field(self, prompt_id: str, name: str) -> str | None:
        value = self.redis.hget(where_key(self.prefix, prompt_id), name)
        if value is None:
            value = self.redis.hget(f"{self.prefix}job:{prompt_id}", name)
        value = text(value) if value is not None else ""
        return value or None

    def origin_of(self, prompt_id: str) -> str | None:
        """Id of the server that admitted ``prompt_id``; None if unknown. Raises ``redis.RedisError``."""
        return self._field(prompt_id, "origin_server")

    def server_of(self, prompt_id: str) -> str | None:
        """Id of the server running ``prompt_id`` or that ran it last; None if it never started."""
        return self._field(prompt_id, "server")

    def url_of(self, server_id: str) -> str | None:
        """Public URL a server advertised (its registry record); None if it is not known."""
        value = self.redis.hget(f"{self.prefix}server:{server_id}", "url")
        return text(value) if value else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, state_dir: Path | None = None,
                 listen: str = "127.0.0.1", port: int = 8188, redis_url: str | None = None,
                 server_timeout: float = 10.0, client: Any = None) -> ClusterContext | None:
        """The context for this server, or None when cluster mode is off.

        ``redis_url`` is the config key's value (the environment wins). ``client`` replaces the
        redis-py client built from the URL (tests). Raises ValueError for a bad cluster name or
        server id. Does not contact Redis.
        """
        env = os.environ if environ is None else environ
        url = env.get("GOVERNOR_REDIS_URL") or redis_url
        if not url:
            return None
        cluster = env.get("GOVERNOR_CLUSTER") or "default"
        prefix = key_prefix(cluster)
        public_url = env.get("GOVERNOR_PUBLIC_URL") or default_public_url(listen, port)
        server_id = env.get("GOVERNOR_SERVER_ID") or persisted_server_id(state_dir, port)
        if not re.fullmatch(r"[A-Za-z0-9._:@-]{1,100}", server_id):
            raise ValueError(f"GOVERNOR_SERVER_ID {server_id!r}: use 1-100 letters, digits or . _ : @ -")
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # Short timeouts and one retry: admission calls Redis on the event loop and under the
            # governor's lock, so an unreachable Redis must fail fast (503), not hang the server.
            client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2.0,
                                          socket_connect_timeout=1.0, health_check_interval=10,
                                          retry=Retry(NoBackoff(), 1))
        timeout = env.get("GOVERNOR_SERVER_TIMEOUT")
        try:
            server_timeout = float(timeout) if timeout else server_timeout
        except ValueError:
            raise ValueError(f"GOVERNOR_SERVER_TIMEOUT {timeout!r}: give seconds, e.g. 10") from None
        registry = ClusterRegistry(client, cluster, server_timeout=server_timeout)
        return cls(redis=client, cluster=cluster, prefix=prefix, server_id=server_id,
                   public_url=public_url.rstrip("/"), registry=registry)


def default_public_url(listen: str, port: int) -> str:
    host = (listen or "127.0.0.1").split(",")[0].strip()
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def persisted_server_id(state_dir: Path | None, port: int) -> str:
    """``<host>-<port>``, remembered in ``<state_dir>/server_id.<port>`` so it survives restarts."""
    derived = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] + f"-{port}"
    if state_dir is None:
        return derived
    path = Path(state_dir) / f"server_id.{port}"  # instances may share the state dir
    try:
        saved = path.read_text().strip()
        if saved:
            return saved
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(derived + "\n")
    except OSError:
        pass
    return derived
