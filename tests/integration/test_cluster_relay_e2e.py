"""Cluster mode end to end: what a client of server s1 sees of its prompts when s2 runs them.

Two real ComfyUI servers in cluster mode on a private ``redis-server``. Prompts go to s1 only; two
at a time, so both workers take one. For every prompt, wherever it ran (``server`` of
``/governor/jobs/{id}``), s1's WebSocket client must get its events, s1's ``/history/{id}`` its
outputs, and s1's ``/view`` its image (proxied from s2 when s2 wrote it).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer, start_all
from harness.redis_server import RedisServer

pytestmark = pytest.mark.integration
NAMES = ("s1", "s2")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("relay-e2e")
    redis_server = RedisServer(base / "redis", name="redis-relay-e2e").start()
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    started = {n: ComfyServer(base / n, name=n, env={
        "GOVERNOR_REDIS_URL": redis_server.url, "GOVERNOR_CLUSTER": cluster, "GOVERNOR_SERVER_ID": n,
        "GOVERNOR_STATE_DIR": str(base / f"{n}-state")}) for n in NAMES}
    try:
        start_all(started.values())
        yield started
    finally:
        for s in started.values():
            s.kill()
        redis_server.kill()


def _graph(tag: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 1, "color": 0x1E28C8}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"e2e_{tag}"}},
        "3": {"class_type": "RGTestSleep", "inputs": {"seconds": 1.5, "steps": 3, "tag": tag}},
    }


def _ended(prompt_id: str):
    return lambda m: m.type == "executing" and (m.data or {}).get("prompt_id") == prompt_id \
        and m.data.get("node") is None


async def _alive(c: ComfyClient, n: int) -> None:
    deadline = time.monotonic() + 30
    while (await c.get("/governor/cluster")).body.get("servers_alive") != n:
        assert time.monotonic() < deadline, "servers never all alive"
        await asyncio.sleep(0.2)


async def test_the_submitting_server_shows_everything_of_prompts_run_elsewhere(servers):
    s1, s2 = servers["s1"], servers["s2"]
    async with ComfyClient(s1.url) as c1, ComfyClient(s2.url) as c2:
        await _alive(c1, 2)
        events = await c1.events()
        ids = [await c1.queue_prompt(_graph(f"p{i}")) for i in range(2)]
        for pid in ids:
            await events.wait_for(_ended(pid), timeout=90)
        ran_on = {pid: (await c1.get(f"/governor/jobs/{pid}")).ok().body["server"] for pid in ids}
        assert set(ran_on.values()) == {"s1", "s2"}, ran_on  # one each: both workers were free
        for pid in ids:
            kinds = [m.type for m in events.messages if isinstance(m.data, dict) and m.data.get("prompt_id") == pid]
            for kind in ("execution_start", "executing", "progress", "executed", "execution_success"):
                assert kind in kinds, (ran_on[pid], kinds)
            entry = await c1.history(pid)
            assert entry is not None and entry["status"]["status_str"] == "success", (ran_on[pid], entry)
            image = entry["outputs"]["2"]["images"][0]
            query = {"filename": image["filename"], "subfolder": image["subfolder"], "type": "output"}
            async with c1.session.get(f"{s1.url}/view", params=query) as r:
                body, served_by = await r.read(), r.headers.get("X-Governor-Served-By")
            assert r.status == 200 and body.startswith(b"\x89PNG"), (ran_on[pid], r.status)
            assert served_by == ("s2" if ran_on[pid] == "s2" else None)
        remote = next(pid for pid, s in ran_on.items() if s == "s2")
        assert (await c2.history(remote)) is not None  # s2 keeps its own entry too


async def test_the_grafana_dashboard_names_only_metrics_a_cluster_server_exports(servers):
    import json
    import re

    from harness.paths import REPO_ROOT

    async with ComfyClient(servers["s1"].url) as c:
        await _alive(c, 2)
        async with c.session.get(f"{servers['s1'].url}/governor/metrics") as r:
            text = await r.text()
    exported = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            exported |= {"counter": {name.removesuffix("_total") + "_total"},
                         "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"}}.get(kind, {name})
    board = json.loads((REPO_ROOT / "docs" / "grafana-governor.json").read_text())
    used = {n for p in board["panels"] for t in p.get("targets", []) for n in re.findall(r"\bgovernor_[a-z_]+", t["expr"])}
    assert used - exported == set()
    assert 'governor_cluster_servers_alive{cluster="' in text
