"""While the cluster's Redis is down, every read-only view keeps answering (never a 500).

In-process governor on a private ``redis-server`` that the test kills.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from restoration_governor.governor.http_api import register_routes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from governor_fakes import make_governor, submit
from test_cluster_governor import join


def samples(gov) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(gov.rt.metrics.render().decode()):
        for s in family.samples:
            out[s.name + repr(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_status_and_health_keep_answering_while_redis_is_down(tmp_path, redis_server_factory, cluster_name):
    server = redis_server_factory("redis-down")
    gov, _host = make_governor(tmp_path / "a", instance="a")
    join(gov, server.url, cluster_name, "a", tmp_path / "a")
    job = submit(gov, "alice", prompt={"1": {"class_type": "X", "inputs": {}}})
    assert gov.dispatch(0).job.prompt_id == job.prompt_id  # running here when Redis goes
    assert gov.health()["redis_up"] is True
    server.kill()

    m = samples(gov)
    assert m["governor_cluster_redis_up" + repr([("cluster", cluster_name)])] == 0.0
    assert m["governor_queue_jobs" + repr([("priority", "normal"), ("state", "running")])] == 1.0
    assert m["governor_leases_in_use" + "[]"] == 1.0  # the slot this server holds, from its own books

    status = gov.status()
    assert status["cluster"]["available"] is False and "redis" in status["cluster"]["error"].lower()
    assert status["counts"]["running"] == 1
    assert [j["prompt_id"] for j in status["running"]] == [job.prompt_id]
    assert status["concurrency"]["in_use"] == 1

    health = gov.health()
    assert (health["ok"], health["redis_up"], health["running"]) == (False, False, 1)

    listing = gov.list_jobs()  # this server's own records, marked as such
    assert listing["cluster_available"] is False
    assert [(j["prompt_id"], j["state"]) for j in listing["jobs"]] == [(job.prompt_id, "running")]


async def test_no_governor_route_answers_500_while_redis_is_down(tmp_path, redis_server_factory, cluster_name):
    server = redis_server_factory("redis-down-http")
    gov, _host = make_governor(tmp_path / "a", instance="a")
    join(gov, server.url, cluster_name, "a", tmp_path / "a")
    job = submit(gov, "alice", prompt={"1": {"class_type": "X", "inputs": {}}})
    assert gov.dispatch(0).job.prompt_id == job.prompt_id
    server.kill()
    routes = web.RouteTableDef()
    register_routes(routes, gov)
    app = web.Application()
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        metrics = await client.get("/governor/metrics")
        assert metrics.status == 200
        assert f'governor_cluster_redis_up{{cluster="{cluster_name}"}} 0.0' in await metrics.text()
        status = await client.get("/governor/status")
        assert status.status == 200 and (await status.json())["cluster"]["available"] is False
        health = await client.get("/governor/health")
        assert health.status == 503 and (await health.json())["redis_up"] is False
        jobs = await client.get("/governor/jobs")
        assert jobs.status == 200 and (await jobs.json())["jobs"][0]["prompt_id"] == job.prompt_id
        one = await client.get(f"/governor/jobs/{job.prompt_id}")
        assert one.status == 200 and (await one.json())["state"] == "running"
