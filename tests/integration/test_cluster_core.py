"""Cluster mode on real servers: three ComfyUI servers share one queue in a real ``redis-server``.

One module-scoped Redis and three servers (``s1``..``s3``), each its own state directory and a
``server_timeout`` of 3 s so failover is quick to observe. Jobs are ``RGTestRecord`` prompts that
append ``start``/``done`` lines to a file, so the tests count every execution on every server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer, start_all
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
        start_all(self.servers.values())

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
    async with ComfyClient(cluster.url("s3")) as c:
        metrics = (await c.get("/governor/metrics")).body
    assert f'governor_cluster_servers_alive{{cluster="{cluster.name}"}} 3.0' in metrics
    assert f'governor_cluster_redis_up{{cluster="{cluster.name}"}} 1.0' in metrics


async def test_work_is_shared_and_each_job_runs_exactly_once(cluster: Cluster):
    n, seconds = 12, 2.0
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


async def wait_running(c: ComfyClient, prompt_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = (await c.get(f"/governor/jobs/{prompt_id}")).ok().body
        if body["state"] == "running" and body.get("server"):
            return body
        assert time.monotonic() < deadline, f"{prompt_id} never started: {body}"
        await asyncio.sleep(0.05)


async def test_settings_and_pause_from_one_server_are_seen_by_all(cluster: Cluster):
    async with ComfyClient(cluster.url("s1")) as c1, ComfyClient(cluster.url("s3")) as c3:
        (await c1.patch("/governor/config", {"aging_interval": 321.0})).ok()
        (await c1.post("/governor/pause")).ok()
        try:
            deadline = time.monotonic() + 5
            while True:
                config = (await c3.get("/governor/config")).ok().body
                status = (await c3.get("/governor/status")).ok().body
                if config["config"]["aging_interval"] == 321.0 and status["state"] == "paused":
                    break
                assert time.monotonic() < deadline, f"s3 still shows {config['settings']['aging_interval']}, " \
                                                    f"{status['state']}"
                await asyncio.sleep(0.1)
            prompt_id = await c3.queue_prompt(cluster.prompt("paused", 0.1))
            await asyncio.sleep(1.5)  # three idle workers, but the cluster is paused: nobody takes it
            job = (await c1.get(f"/governor/jobs/{prompt_id}")).ok().body
            assert (job["state"], job["position"]) == ("pending", 1)
        finally:
            (await c3.post("/governor/resume")).ok()
        final = await wait_final(c1, prompt_id)
        assert final["state"] == "success"
        (await c1.patch("/governor/config", {"aging_interval": 600.0})).ok()


async def test_global_order_priority_and_fair_share_across_servers(cluster: Cluster):
    async with ComfyClient(cluster.url("s1"), client_id="alice") as a, \
            ComfyClient(cluster.url("s2"), client_id="bob") as b, ComfyClient(cluster.url("s3")) as c:
        (await a.post("/governor/pause")).ok()
        try:
            alice = [await a.queue_prompt(cluster.prompt(f"alice{i}", 0.1)) for i in range(4)]
            bob = [await b.queue_prompt(cluster.prompt(f"bob{i}", 0.1)) for i in range(2)]
            urgent = (await c.submit(cluster.prompt("urgent", 0.1), headers={"X-Priority": "high"})).ok().body
            assert urgent["governor"]["position"] == 1
            listed = (await c.get("/governor/jobs?state=pending")).ok().body["jobs"]
            order = [j["prompt_id"] for j in listed]
            want = [urgent["prompt_id"], alice[0], bob[0], alice[1], bob[1], alice[2], alice[3]]
            assert order == want
            for server in (a, b, c):  # every server tells the same global positions
                places = [(await server.get(f"/governor/jobs/{p}")).ok().body["position"] for p in want]
                assert places == list(range(1, len(want) + 1))
            queue = (await b.get("/queue")).ok().body  # ComfyUI's own queue view: the same order
            assert [item[1] for item in sorted(queue["queue_pending"], key=lambda i: i[0])] == want
        finally:
            (await b.post("/governor/resume")).ok()
        for p in want:
            assert (await wait_final(c, p))["state"] == "success"


async def test_cancel_from_another_server_interrupts_the_running_job(cluster: Cluster):
    async with ComfyClient(cluster.url("s1")) as c:
        prompt_id = await c.queue_prompt(cluster.prompt("cancelme", 20.0))
        running = await wait_running(c, prompt_id)
        other = next(n for n in NAMES if n != running["server"])
        async with ComfyClient(cluster.url(other)) as o:
            started = time.monotonic()
            (await o.post(f"/governor/jobs/{prompt_id}/cancel")).ok()
            final = await wait_final(o, prompt_id, timeout=10)
        assert final["state"] == "cancelled" and final["server"] == running["server"]
        assert time.monotonic() - started < 5
    counts = cluster.executions()
    assert (counts[("start", "cancelme")], counts[("done", "cancelme")]) == (1, 0)


async def test_kill_9_of_the_running_server_finishes_the_job_elsewhere(cluster: Cluster):
    seconds = 4.0
    async with ComfyClient(cluster.url("s1")) as c:
        prompt_id = await c.queue_prompt(cluster.prompt("failover", seconds))
        running = await wait_running(c, prompt_id)
        victim = running["server"]
        await asyncio.sleep(0.5)
    cluster.servers[victim].kill()
    killed = time.monotonic()
    survivor = next(n for n in NAMES if n != victim)
    async with ComfyClient(cluster.url(survivor)) as s:
        final = await wait_final(s, prompt_id, timeout=60)
        recovered = time.monotonic() - killed
        assert final["state"] == "success" and final["server"] != victim and final["attempts"] == 2
        assert recovered < SERVER_TIMEOUT + seconds + 5, f"finished {recovered:.1f}s after the kill"
        counts = cluster.executions()
        assert (counts[("start", "failover")], counts[("done", "failover")]) == (2, 1)
        restart_started = time.monotonic()
        cluster.servers[victim].start()
        await wait_cluster(s, 3)
        restarted = time.monotonic() - restart_started
    print(f"\nkill -9 of {victim}: job done on {final['server']} {recovered:.2f}s after the kill "
          f"(server_timeout {SERVER_TIMEOUT}s + run {seconds}s); {victim} back in the cluster in {restarted:.1f}s")
    await asyncio.sleep(1.0)
    counts = cluster.executions()
    assert counts[("done", "failover")] == 1  # the restarted server did not run it again


async def test_redis_down_means_503_then_recovery_without_loss(cluster: Cluster):
    async with ComfyClient(cluster.url("s2")) as c:
        await wait_cluster(c, 3)
        prompt_id = await c.queue_prompt(cluster.prompt("outage", 3.0))
        await wait_running(c, prompt_id)
        cluster.redis.stop()
        try:
            refused = await c.submit(cluster.prompt("refused", 0.1))
            assert refused.status == 503, refused.body
            assert refused.body["error"]["type"] == "cluster_unavailable" and refused.body["node_errors"] == {}
            assert int(refused.headers["Retry-After"]) >= 1
            deadline = time.monotonic() + 15
            while cluster.executions()[("done", "outage")] < 1:  # the running job finishes while Redis is away
                assert time.monotonic() < deadline, "the running job did not finish while Redis was down"
                await asyncio.sleep(0.1)
            assert all(s.alive() for s in cluster.servers.values())
        finally:
            cluster.redis.start()
        final = await wait_final(c, prompt_id, timeout=30)  # reported once Redis is back
        assert final["state"] == "success"
        after = await c.queue_prompt(cluster.prompt("after", 0.1))
        assert (await wait_final(c, after))["state"] == "success"
    await asyncio.sleep(SERVER_TIMEOUT + 1)  # nobody was declared dead and rerun the job meanwhile
    assert cluster.executions()[("start", "outage")] == 1


async def test_redis_restart_keeps_pending_jobs(cluster: Cluster):
    async with ComfyClient(cluster.url("s3")) as c:
        await wait_cluster(c, 3)
        (await c.post("/governor/pause")).ok()
        try:
            ids = [await c.queue_prompt(cluster.prompt(f"kept{i}", 0.1)) for i in range(3)]
            cluster.redis.restart()
        finally:
            deadline = time.monotonic() + 20
            while (await c.post("/governor/resume")).status != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        finals = [await wait_final(c, p, timeout=60) for p in ids]
    assert [f["state"] for f in finals] == ["success"] * 3
    counts = cluster.executions()
    assert [counts[("done", f"kept{i}")] for i in range(3)] == [1, 1, 1]


async def test_idempotency_keys_and_drain_are_cluster_wide(cluster: Cluster):
    key = f"k-{uuid.uuid4().hex}"
    prompt = cluster.prompt("idem", 0.1)
    async with ComfyClient(cluster.url("s1"), client_id="carol") as c1, \
            ComfyClient(cluster.url("s2"), client_id="carol") as c2:  # one client retrying through another server
        first = (await c1.submit(prompt, headers={"Idempotency-Key": key})).ok()
        again = (await c2.submit(prompt, headers={"Idempotency-Key": key})).ok()  # another server
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.body["prompt_id"] == first.body["prompt_id"]
        assert (await wait_final(c2, first.body["prompt_id"]))["state"] == "success"
        (await c1.post("/governor/drain")).ok()
        try:
            deadline = time.monotonic() + 5
            while True:
                refused = await c2.submit(cluster.prompt("drained", 0.1))
                if refused.status == 503:
                    break
                assert refused.status == 200 and time.monotonic() < deadline, refused.body
                await wait_final(c2, refused.body["prompt_id"])
                await asyncio.sleep(0.1)
            assert refused.body["error"]["type"] == "governor_draining"
        finally:
            (await c2.post("/governor/resume")).ok()
    assert cluster.executions()[("done", "idem")] == 1
