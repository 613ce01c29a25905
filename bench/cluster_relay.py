"""Cluster relay latency: an event sent on server B for a prompt server A admitted -> delivered on A.

Runs a private ``redis-server`` (as the tests do), one relay per side with the real subscriber thread,
and fake ComfyUI send functions that timestamp each delivery. Reports, as JSON: the time
``send_sync`` takes on B with the relay (one XADD), the end-to-end latency of progress events and of
64 KiB binary previews, and a final history entry. Usage:
``.venv/bin/python bench/cluster_relay.py [--events 2000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from _common import emit, summary_ms, use_repo_packages

use_repo_packages()

import redis  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from restoration_governor.governor.comfy_cluster_relay import PREVIEW_IMAGE, ClusterRelay  # noqa: E402
from restoration_governor.governor.redis_jobs import key_prefix  # noqa: E402


class _Ctx:
    def __init__(self, client, prefix: str, server_id: str) -> None:
        self.redis, self.prefix, self.server_id = client, prefix, server_id

    def origin_of(self, prompt_id: str) -> str:
        return "A"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis", name="bench-relay").start()
        try:
            emit({"bench": "cluster_relay", "redis": server.url, **_run(server.url, args.events)})
        finally:
            server.stop()


def _run(url: str, n: int) -> dict:
    prefix = key_prefix("bench")
    arrivals: dict[int, float] = {}
    done = threading.Condition()

    def on_a(event, data, sid) -> None:
        key = data["value"] if isinstance(data, dict) and "value" in data else -1
        if isinstance(data, (bytes, bytearray)):
            key = int.from_bytes(data[4:8], "big")
        with done:
            arrivals[key] = time.perf_counter()
            done.notify_all()

    history_at: list[float] = []
    a = ClusterRelay(_Ctx(redis.Redis.from_url(url), prefix, "A"), on_a,
                     store_history=lambda _pid, _e: history_at.append(time.perf_counter()))
    b = ClusterRelay(_Ctx(redis.Redis.from_url(url), prefix, "B"), lambda *_: None, store_history=lambda *_: None)
    a.start(redis.Redis.from_url(url, socket_timeout=10))
    deadline = time.monotonic() + 10
    while a.subscriber._live_from is None and time.monotonic() < deadline:  # started reading: events count
        time.sleep(0.001)

    sent: dict[int, float] = {}
    send_cost: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        sent[i] = t0
        b.relay_send("progress", {"value": i, "max": n, "prompt_id": "p-1", "node": "3"}, "client-1")
        send_cost.append(time.perf_counter() - t0)
    _wait(done, arrivals, n)
    progress = [arrivals[i] - sent[i] for i in range(n)]

    previews: list[float] = []
    blob = bytes(64 * 1024 - 8)
    for j in range(50):
        key = 10_000_000 + j
        t0 = time.perf_counter()
        b.relay_send(PREVIEW_IMAGE, b"\0\0\0\1" + key.to_bytes(4, "big") + blob, "client-1")
        _wait(done, arrivals, key, single=True)
        previews.append(arrivals[key] - t0)

    t0 = time.perf_counter()
    b.task_finished("p-1", {"outputs": {"9": {"images": [{"filename": "x.png", "subfolder": "", "type": "output"}]}},
                            "status": {"status_str": "success", "completed": True, "messages": []}})
    deadline = time.monotonic() + 10
    while not history_at and time.monotonic() < deadline:
        time.sleep(0.001)
    a.stop(join_s=2.0)
    return {"events": n, "send_sync_with_relay": summary_ms(send_cost), "progress_event_latency": summary_ms(progress),
            "preview_64KiB_latency": summary_ms(previews),
            "history_latency_ms": round((history_at[0] - t0) * 1000, 3) if history_at else None}


def _wait(done: threading.Condition, arrivals: dict, target: int, single: bool = False) -> None:
    with done:
        ok = done.wait_for(lambda: (target in arrivals) if single else len(arrivals) >= target, timeout=30)
    if not ok:
        raise TimeoutError(f"relay did not deliver {target}")


if __name__ == "__main__":
    main()
