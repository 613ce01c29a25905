"""Turning cluster mode on: the Redis-backed parts of a ``Governor``, start-up, and ``GET /governor/cluster``.

``build`` (called by the adapter before the ``Governor`` exists) returns the ``ClusterContext``
and the GPU-slot manager in Redis, or ``(None, None)`` without ``GOVERNOR_REDIS_URL`` (and no
``redis_url`` setting): then nothing of cluster mode runs. ``attach`` gives the governor its
``ClusterQueue``; ``start`` (on ComfyUI's start-up signal, once every node pack is loaded)
registers the server with its node classes, requeues what Redis thinks it was running before a
restart, and moves the jobs still pending in its local SQLite queue into the shared queue (a
server switched from single to cluster mode; the log says how many moved).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from .cluster_context import ClusterContext
from .cluster_queue import ClusterQueue
from .cluster_work import move_local_pending
from .facade import Governor
from .http_admission import error_response
from .redis_leases import RedisLeaseManager, gpu_identity

log = logging.getLogger("restoration_governor.cluster")


def build(state_dir: Path, listen: str | None, port: int | None, cuda_index: int | None,
          cuda_uuid: str | None) -> tuple[ClusterContext | None, RedisLeaseManager | None, str]:
    """(context, GPU slots in Redis, GPU key), or (None, None, '') when cluster mode is off."""
    redis_url = _config_redis_url(state_dir / "config.json")
    ctx = ClusterContext.from_env(state_dir=state_dir, listen=listen or "127.0.0.1", port=int(port or 8188),
                                  redis_url=redis_url)
    if ctx is None:
        return None, None, ""
    if cuda_uuid:
        gpu = cuda_uuid
    elif cuda_index is not None:
        gpu = gpu_identity(cuda_index)  # NVML's UUID, else <host>:<index>
    else:  # CPU only: no device is shared, every server is its own "GPU"
        gpu = f"{socket.gethostname()}:cpu:{ctx.server_id}"
    leases = RedisLeaseManager(ctx.redis, ctx.cluster, gpu, ctx.server_id)
    log.info("cluster mode: server %s (%s) in cluster %r, GPU slots %s", ctx.server_id, ctx.public_url,
             ctx.cluster, gpu)
    return ctx, leases, gpu


def _config_redis_url(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text()).get("redis_url")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def attach(governor: Governor, ctx: ClusterContext, gpu: str) -> ClusterQueue:
    cluster = ClusterQueue(ctx, aging_interval=governor.config.aging_interval, gpu=gpu, clock=governor.rt.clock)
    governor.rt.cluster = cluster
    governor.metrics.registry.register(ClusterGauges(cluster))
    return cluster


class ClusterGauges:
    """Cluster-wide gauges on every server's ``/governor/metrics`` (read from Redis at scrape time;
    every server reports the same values, so dashboards take ``max``)."""

    def __init__(self, cluster: ClusterQueue) -> None:
        self.cluster = cluster

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        labels = ["cluster"]
        name = [self.cluster.ctx.cluster]
        up = GaugeMetricFamily("governor_cluster_redis_up", "1 while this server reaches the cluster's Redis",
                               labels=labels)
        try:
            servers = self.cluster.ctx.registry.servers()
            pending, running = len(self.cluster.rq), len(self.cluster.rq.running())
        except Exception:
            up.add_metric(name, 0.0)
            yield up
            return
        up.add_metric(name, 1.0)
        yield up
        for metric, doc, value in (
                ("governor_cluster_pending_jobs", "Jobs waiting in the shared queue", pending),
                ("governor_cluster_running_jobs", "Jobs running on any server of the cluster", running),
                ("governor_cluster_servers_alive", "Servers heartbeating within server_timeout",
                 sum(1 for s in servers if s.alive)),
                ("governor_cluster_servers_known", "Servers listed in the cluster (alive or not)", len(servers))):
            gauge = GaugeMetricFamily(metric, doc, labels=labels)
            gauge.add_metric(name, value)
            yield gauge


def start(governor: Governor, node_classes: frozenset[str], leases: RedisLeaseManager) -> None:
    """Register (with the node classes loaded by now), requeue own leftovers, move local pending jobs."""
    rt = governor.rt
    cluster = rt.cluster
    assert cluster is not None
    cluster.classes = node_classes
    leases.start_heartbeat()
    try:
        exhausted = cluster.register(rt.dispatch_state)
        if exhausted:
            log.warning("jobs this server ran too often before it restarted: %s", [q.prompt_id for q in exhausted])
    except Exception as e:  # Redis down at start: retried by the maintenance tick
        log.warning("could not join cluster %r yet (%s); will retry", cluster.ctx.cluster, e)
    with rt.lock:
        move_local_pending(rt)


def stop(governor: Governor, leases: RedisLeaseManager) -> None:
    """Clean shutdown: leave the cluster at once, so a job still running here is rescued without
    waiting for ``server_timeout``."""
    cluster = governor.rt.cluster
    leases.stop_heartbeat()
    if cluster is None:
        return
    try:
        cluster.ctx.registry.deregister(cluster.server_id)
    except Exception as e:
        log.warning("could not leave cluster %r cleanly: %s", cluster.ctx.cluster, e)


def cluster_view(governor: Governor) -> dict[str, Any]:
    """``GET /governor/cluster``: this server, the queue depth and every server of the cluster."""
    cluster = governor.rt.cluster
    if cluster is None:
        return {"enabled": False}
    servers = cluster.ctx.registry.servers()
    return {"enabled": True, "cluster": cluster.ctx.cluster, "server_id": cluster.server_id,
            "pending": len(cluster.rq), "running": len(cluster.rq.running()),
            "servers_alive": sum(1 for s in servers if s.alive), "now": time.time(),
            "servers": [s.summary() for s in servers]}


def register_cluster_route(routes: web.RouteTableDef, governor: Governor) -> None:
    @routes.get("/governor/cluster")
    async def get_cluster(_request: web.Request) -> web.Response:
        from .cluster_queue import unavailable

        try:
            return web.json_response(cluster_view(governor))
        except Exception as e:
            return error_response(unavailable(e))

    del get_cluster  # registered on ``routes``
