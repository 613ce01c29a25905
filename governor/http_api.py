"""The governor's control API: ``/governor/...`` routes (plain aiohttp; ComfyUI copies them to ``/api/...``).

``register_routes`` adds health, status, jobs (list, one, cancel / retry / priority), pause /
drain / resume, settings and metrics to a RouteTableDef. Who may call what is in
``docs/governor.md``; refusals use ComfyUI's error shape (``errors``). Nothing here imports ComfyUI.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .auth import sees_everything
from .config import effective_admin_token, setting_docs
from .errors import GovernorError, bad_request, forbidden
from .facade import Governor, Viewer
from .http_admission import error_response, read_json, requester
from .jobs import JobState, Priority
from .runtime import DRAINING, PAUSED, RUNNING


def register_routes(routes: web.RouteTableDef, governor: Governor) -> None:
    def admin_only(request: web.Request) -> None:
        if governor.is_admin(request.headers, request.remote):
            return
        if effective_admin_token(governor.config):
            raise GovernorError(401, "admin_token_required", "Admin token required",
                                "send X-Governor-Token: <token> (or Authorization: Bearer <token> "
                                "when no proxy owns that header)")
        raise forbidden("Admin actions are allowed from this machine only",
                        "no admin token is set, so only loopback clients may administer the governor")

    async def body_of(request: web.Request) -> dict:
        if not request.can_read_body:
            return {}
        data = await read_json(request, 1 << 20)
        if not isinstance(data, dict):
            raise bad_request("invalid_request", "Invalid request", "the body must be a JSON object")
        return data

    def viewer(request: web.Request) -> Viewer:
        admin = governor.is_admin(request.headers, request.remote)
        return Viewer(requester(request, {}), sees_everything(governor.config, admin))

    def guarded(fn):
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)
            except GovernorError as e:
                return error_response(e)
        wrapper.__name__ = fn.__name__
        return wrapper

    @routes.get("/governor/health")
    @guarded
    async def health(request: web.Request) -> web.Response:
        report = governor.health()
        return web.json_response(report, status=200 if report["ok"] else 503)

    @routes.get("/governor/status")
    @guarded
    async def status(request: web.Request) -> web.Response:
        return web.json_response(governor.status(can_admin=governor.is_admin(request.headers, request.remote),
                                                 viewer=viewer(request)))

    @routes.get("/governor/jobs")
    @guarded
    async def list_jobs(request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            raise bad_request("invalid_state", "Unknown state", f"{state!r}; use one of "
                              f"{', '.join(s.value for s in JobState)}")
        try:
            limit = int(q.get("limit", 100))
            offset = int(q.get("offset", 0))
        except ValueError:
            raise bad_request("invalid_request", "limit and offset must be integers") from None
        if not (1 <= limit <= 1000 and offset >= 0):
            raise bad_request("invalid_request", "limit must be 1-1000 and offset >= 0")
        return web.json_response(governor.list_jobs(q.get("client_id"), state, limit, offset, viewer(request)))

    @routes.get("/governor/jobs/{prompt_id}")
    @guarded
    async def get_job(request: web.Request) -> web.Response:
        return web.json_response(governor.job_view(governor.find(request.match_info["prompt_id"]), viewer(request)))

    def job_action(action: str, act) -> None:
        """``POST /governor/jobs/{id}/<action>``: ``act(prompt_id, body, client_id=, admin=)`` returns the job."""
        @routes.post(f"/governor/jobs/{{prompt_id}}/{action}")
        @guarded
        async def handler(request: web.Request) -> web.Response:
            body = await body_of(request)
            job = act(request.match_info["prompt_id"], body, client_id=requester(request, body),
                      admin=governor.is_admin(request.headers, request.remote))
            return web.json_response(governor.job_view(job, viewer(request)))
        handler.__name__ = f"job_{action}"

    def parse_priority(body: dict) -> Priority:
        try:
            return Priority.parse(body.get("priority"))
        except ValueError as e:
            raise bad_request("invalid_priority", "Invalid priority", str(e)) from None

    job_action("cancel", lambda pid, body, **who: governor.cancel(pid, **who))
    job_action("retry", lambda pid, body, **who: governor.retry(pid, **who))
    job_action("priority", lambda pid, body, **who: governor.set_priority(pid, parse_priority(body), **who))

    def state_route(path: str, state: str):
        @routes.post(path)
        @guarded
        async def set_state(request: web.Request) -> web.Response:
            admin_only(request)
            governor.set_dispatch_state(state)
            return web.json_response({"state": governor.state})
        set_state.__name__ = f"set_{state}"

    state_route("/governor/pause", PAUSED)
    state_route("/governor/drain", DRAINING)
    state_route("/governor/resume", RUNNING)

    @routes.get("/governor/config")
    @guarded
    async def get_config(request: web.Request) -> web.Response:
        return web.json_response({"config": governor.config.public(), "settings": setting_docs_public()})

    @routes.patch("/governor/config")
    @guarded
    async def patch_config(request: web.Request) -> web.Response:
        admin_only(request)
        body = await body_of(request)
        new = governor.update_config(body)
        return web.json_response({"config": new.public()})

    @routes.get("/governor/metrics")
    @guarded
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=governor.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def setting_docs_public() -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "secret"} for d in setting_docs()]
