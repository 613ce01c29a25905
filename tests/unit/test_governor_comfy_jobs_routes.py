"""The jobs routes on a core that has them (0.4x): the governor adds none and guards the core's own
(governor/comfy_jobs_routes.py, governor/http_core_guard.py), on a small aiohttp app standing in for it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from governor_fakes import make_governor, submit
from restoration_governor.governor.comfy_jobs_routes import register_jobs_routes
from restoration_governor.governor.http_core_guard import make_guard_middleware


def _core_routes(cancelled: list[str], jobs: list[dict]) -> web.RouteTableDef:
    """What core 0.4x registers (``routes`` is copied to ``/api/...`` by the core)."""
    routes = web.RouteTableDef()

    @routes.get("/jobs")
    async def list_jobs(request):
        return web.json_response({"jobs": jobs, "pagination": {"offset": 0, "limit": 9, "total": 2,
                                                               "has_more": False}})

    @routes.post("/jobs/{job_id}/cancel")
    async def cancel(request):
        cancelled.append(request.match_info["job_id"])
        return web.json_response({"cancelled": True})

    return routes


def _api_copy(routes: web.RouteTableDef) -> list[web.RouteDef]:
    return [web.route(r.method, "/api" + r.path, r.handler) for r in routes if isinstance(r, web.RouteDef)]


async def test_on_a_core_with_jobs_routes_the_governor_adds_none_and_guards_the_cores(tmp_path):
    gov, _ = make_governor(tmp_path, admin_token="t")
    gov.set_dispatch_state("paused")
    mine, theirs = submit(gov, client="me"), submit(gov, client="other")
    cancelled: list[str] = []
    listed = [{"id": j.prompt_id, "status": "pending", "create_time": 1, "priority": i,
               "workflow": {"prompt": {"1": {}}, "extra_data": {"client_id": j.client_id}}, "workflow_id": "w"}
              for i, j in enumerate((mine, theirs))]
    routes = _core_routes(cancelled, listed)
    assert register_jobs_routes(routes, queue=None, may_cancel=None, view=None) is False
    assert sorted(r.path for r in routes) == ["/jobs", "/jobs/{job_id}/cancel"]  # nothing duplicated

    app = web.Application(middlewares=[make_guard_middleware(gov, core_jobs=True)])
    app.add_routes(_api_copy(routes))
    async with TestClient(TestServer(app)) as client:
        me, other = {"X-Client-Id": "me"}, {"X-Client-Id": "other"}
        refused = await client.post(f"/api/jobs/{mine.prompt_id}/cancel", headers=other)
        assert refused.status == 403 and (await refused.json())["error"]["type"] == "forbidden"
        assert cancelled == []  # the core's handler never ran
        assert (await client.post(f"/api/jobs/{mine.prompt_id}/cancel", headers=me)).status == 200
        assert (await client.post(f"/api/jobs/{theirs.prompt_id}/cancel",
                                  headers={"X-Governor-Token": "t"})).status == 200
        assert cancelled == [mine.prompt_id, theirs.prompt_id]
        seen = {j["id"]: j for j in (await (await client.get("/api/jobs", headers=me)).json())["jobs"]}
        assert seen[mine.prompt_id]["workflow_id"] == "w"
        assert seen[theirs.prompt_id]["workflow"] == {"prompt": {}, "extra_data": {}}
        assert "workflow_id" not in seen[theirs.prompt_id] and seen[theirs.prompt_id]["priority"] == 1
