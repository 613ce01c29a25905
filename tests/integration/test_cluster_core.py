"""Cluster mode on real servers: three ComfyUI servers share one queue in a real ``redis-server``.

One module-scoped Redis and three servers (``s1``..``s3``), each its own state directory and a
``server_timeout`` of 3 s so failover is quick to observe. Jobs are ``RGTestRecord`` prompts that
append ``start``/``done`` lines to a file, so the tests count every execution on every server.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer
from harness.graphs import Graph
from harness.redis_server import RedisServer

SERVER_TIMEOUT = 3.0
NAMES = ("s1", "s2", "s3")


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.redis = RedisServer(base / "redis", name="redis-cluster").start()
        self.name = f"c-{uuid.uuid4().hex[:8]}"
        self.servers = {n: ComfyServer(base / n, name=n, env=self.env(n)) for n in NAMES}
        self.log = base / "executions.log"

    def env(self, name: str) -> dict[str, str]:
        return {"GOVERNOR_REDIS_URL": self.redis.url, "GOVERNOR_CLUSTER": self.name, "GOVERNOR_SERVER_ID": name,
                "GOVERNOR_SERVER_TIMEOUT": str(SERVER_TIMEOUT), "GOVERNOR_STATE_DIR": str(self.base / f"{name}-state")}

    def start_all(self) -> None:
        errors: list[BaseException] = []

        def start(server: ComfyServer) -> None:
            try:
                server.start()
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,)) for s in self.servers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def url(self, name: str) -> str:
        return self.servers[name].url

    def executions(self) -> Counter[tuple[str, str]]:
        """(``start``|``done``, tag) -> how many times it was logged."""
        if not self.log.exists():
            return Counter()
        return Counter(tuple(line.split()[:2]) for line in self.log.read_text().splitlines() if line.strip())

    def prompt(self, tag: str, seconds: float) -> dict:
        g = Graph()
        g.node("RGTestRecord", path=str(self.log), tag=tag, seconds=seconds)
        return g.prompt()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_all()
        yield c
    finally:
        for s in c.servers.values():
            s.kill()
        c.redis.kill()


async def wait_cluster(c: ComfyClient, alive: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = (await c.get("/governor/cluster")).ok().body
        if view.get("servers_alive") == alive and all(s["state"] for s in view["servers"]):
            return view
        assert time.monotonic() < deadline, f"cluster never showed {alive} live servers: {view}"
        await asyncio.sleep(0.2)


async def wait_final(c: ComfyClient, prompt_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = await c.get(f"/governor/jobs/{prompt_id}")
        if r.status == 200 and r.body["state"] in ("success", "failed", "cancelled"):
            return r.body
        assert time.monotonic() < deadline, f"{prompt_id} did not finish: {r.status} {r.body}"
        await asyncio.sleep(0.1)


async def test_cluster_view_lists_every_server(cluster: Cluster):
    async with ComfyClient(cluster.url("s2")) as c:
        view = await wait_cluster(c, 3)
    assert view["enabled"] is True and view["server_id"] == "s2"
    ids = {s["id"]: s for s in view["servers"]}
    assert set(ids) == set(NAMES)
    assert ids["s1"]["url"] == cluster.url("s1")
    assert len({s["node_classes_hash"] for s in ids.values()}) == 1  # the same packs everywhere
    assert all(s["alive"] and s["heartbeat_age_s"] < SERVER_TIMEOUT for s in ids.values())


async def test_work_is_shared_and_each_job_runs_exactly_once(cluster: Cluster):
    n, seconds = 15, 1.0
    async with ComfyClient(cluster.url("s1")) as c:
        await wait_cluster(c, 3)
        started = time.monotonic()
        ids = [await c.queue_prompt(cluster.prompt(f"share{i}", seconds)) for i in range(n)]
        finals = [await wait_final(c, p, timeout=120) for p in ids]
        elapsed = time.monotonic() - started
    assert [f["state"] for f in finals] == ["success"] * n
    servers = Counter(f["server"] for f in finals)
    assert set(servers) == set(NAMES), servers  # every server took some of them
    one_server = n * seconds  # one worker runs one prompt at a time: at least this long
    assert elapsed < 0.5 * one_server, f"{n} x {seconds}s took {elapsed:.1f}s on 3 servers ({servers})"
    counts = cluster.executions()
    assert [counts[("done", f"share{i}")] for i in range(n)] == [1] * n
    assert [counts[("start", f"share{i}")] for i in range(n)] == [1] * n
    print(f"\n{n} x {seconds}s jobs through s1 on 3 servers: {elapsed:.2f}s (one server >= {one_server:.0f}s); "
          f"ran on {dict(servers)}")
