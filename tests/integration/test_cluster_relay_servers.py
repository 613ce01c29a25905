"""Two real ComfyUI servers on one real Redis: a prompt that server B runs for server A's client.

The client is connected to A by WebSocket. The prompt is sent to B, and the test records in Redis
that A admitted it (the fixture pack ``rg_test_cluster_relay`` gives the relay that answer; in
cluster mode the shared queue does). A's client must get B's events with its sid, A's
``/history/{id}`` must hold B's final entry, and A's ``/view`` must return the file B wrote.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer, start_all

from governor.redis_jobs import key_prefix

pytestmark = pytest.mark.integration


CLUSTER = f"relay-{uuid.uuid4().hex[:8]}"  # its own key prefix: other tests flush database 0, not this one's
DB = 3


@pytest.fixture(scope="module")
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{DB}", decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory, redis_server, redis_client):
    servers = {}
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    for name in ("A", "B"):
        server = ComfyServer(tmp_path_factory.mktemp(f"relay-{name}"), name=f"comfy-{name}", env={
            "RG_TEST_RELAY_REDIS_URL": url, "RG_TEST_RELAY_CLUSTER": CLUSTER, "RG_TEST_RELAY_SERVER_ID": name})
        server.env["RG_TEST_RELAY_PUBLIC_URL"] = server.url
        servers[name] = server
    try:
        start_all(servers.values())
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _graph(tag: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 1, "color": 0xC81E28}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"relay_{tag}"}},
        "3": {"class_type": "RGTestSleep", "inputs": {"seconds": 0.3, "steps": 3, "tag": tag}},
    }


async def test_the_admitting_server_relays_events_history_and_files_of_a_prompt_run_elsewhere(
        two_servers, redis_client):
    a, b = two_servers["A"], two_servers["B"]
    prefix = key_prefix(CLUSTER)
    sid = f"client-{uuid.uuid4().hex[:8]}"
    prompt_id = str(uuid.uuid4())
    redis_client.set(f"{prefix}test-origin:{prompt_id}", "A")
    async with ComfyClient(a.url, client_id=sid) as on_a, ComfyClient(b.url, client_id=sid) as on_b:
        events = await on_a.events()
        await on_b.submit(_graph("r1"), prompt_id=prompt_id)
        await events.wait_for(_ended(prompt_id), timeout=60)
        # A's history already holds the entry: it was relayed before the end event
        entry = await on_a.history(prompt_id)
        query = {"filename": _saved(entry)["filename"], "type": "output", "subfolder": _saved(entry)["subfolder"]}
        view = await _view(on_a, query)
        direct = await _view(on_b, query)
    kinds = [m.type for m in events.messages if isinstance(m.data, dict) and m.data.get("prompt_id") == prompt_id]
    for kind in ("execution_start", "executing", "progress", "executed", "execution_success"):
        assert kind in kinds, kinds
    assert kinds.index("execution_start") < kinds.index("executed") < kinds.index("execution_success")
    assert len(events.of_type("progress", prompt_id)) == 3  # RGTestSleep's three steps, each relayed
    executed = [m.data for m in events.of_type("executed", prompt_id) if m.data["node"] == "2"]
    assert executed[0]["output"]["images"][0]["filename"].startswith("relay_r1")
    assert entry["status"]["status_str"] == "success" and set(entry["outputs"]) == {"2", "3"}
    assert view[0] == 200 and view[1].get("X-Governor-Served-By") == "B"
    assert view[2] == direct[2] and view[2].startswith(b"\x89PNG")
    assert not list((a.base_dir / "output").glob("relay_r1*"))  # the file exists only on B


async def test_a_prompt_admitted_by_the_server_that_runs_it_is_not_relayed(two_servers, redis_client):
    a, b = two_servers["A"], two_servers["B"]
    prompt_id = str(uuid.uuid4())
    redis_client.set(f"{key_prefix(CLUSTER)}test-origin:{prompt_id}", "B")
    sid = f"client-{uuid.uuid4().hex[:8]}"
    async with ComfyClient(a.url, client_id=sid) as on_a, ComfyClient(b.url, client_id=sid) as on_b:
        on_a_events = await on_a.events()
        on_b_events = await on_b.events()
        await on_b.submit(_graph("r2"), prompt_id=prompt_id)
        await on_b_events.wait_for(_ended(prompt_id), timeout=60)
        assert await on_a.history(prompt_id) is None
    assert [m for m in on_a_events.messages if isinstance(m.data, dict) and m.data.get("prompt_id") == prompt_id] == []


def _ended(prompt_id: str):
    """``executing {node: null}``: sent after the worker wrote the history entry."""
    return lambda m: m.type == "executing" and (m.data or {}).get("prompt_id") == prompt_id \
        and m.data.get("node") is None


async def _view(client: ComfyClient, query: dict) -> tuple[int, dict, bytes]:
    async with client.session.get(f"{client.base_url}/view", params=query) as r:
        return r.status, dict(r.headers), await r.read()


def _saved(entry: dict) -> dict:
    return entry["outputs"]["2"]["images"][0]
