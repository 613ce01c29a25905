"""``/api/jobs`` routes for cores that lack them (ComfyUI ≤ 0.3.x), served from the governed queue.

Frontend 1.58 reads its Job Queue and Job History panels from ``/api/jobs`` and cancels through
``POST /api/jobs/{id}/cancel``. Core 0.4x has these routes and builds them from the prompt queue,
which the governor already numbers in run order; older cores do not, so a user who runs a newer
frontend on an old core (``--front-end-version``) would see empty panels. ``register_jobs_routes``
adds the same routes, with the same contract (:mod:`.comfy_jobs_api`), only where the core has none.

A cancel goes through the queue's own verbs — ``delete_queue_item`` for a pending job,
``interrupt_if_running`` for a running one — which the governed queue turns into governor cancels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import comfy_jobs_api as api
from .errors import GovernorError, bad_request, not_found
from .http_admission import error_response as _error

JOBS_PATHS = ("/jobs", "/api/jobs")

# (request, prompt_id) -> None, or raises GovernorError(403) when the caller may not cancel that job.
CancelCheck = Callable[[web.Request, str], None]
# (request, job) -> the job as this caller may see it.
JobView = Callable[[web.Request, dict[str, Any]], dict[str, Any]]


def core_has_jobs_api(routes) -> bool:
    """True when the core already registered ``/api/jobs`` (core 0.4x)."""
    return any(getattr(route, "path", None) in JOBS_PATHS for route in routes)


def _snapshot(queue) -> tuple[list, list, dict]:
    running, pending = queue.get_current_queue_volatile()
    return list(running), list(pending), queue.get_history()


def cancel_one(queue, prompt_id: str) -> str:
    """Cancel one job wherever it is; returns what :func:`.comfy_jobs_api.cancel_target` found.

    A job that starts between the look-up and the dequeue is interrupted instead; one that finished
    meanwhile is a no-op.
    """
    running, pending, history = _snapshot(queue)
    target = api.cancel_target(prompt_id, running, pending, history)
    if target == api.CANCEL_PENDING and not queue.delete_queue_item(lambda item: item[1] == prompt_id):
        target = api.CANCEL_RUNNING
    if target == api.CANCEL_RUNNING and not queue.interrupt_if_running(prompt_id):
        target = api.CANCEL_FINISHED
    return target


def register_jobs_routes(routes, queue, *, may_cancel: CancelCheck, view: JobView) -> bool:
    """Add the jobs routes to ``routes`` unless the core has them; returns whether it added them."""
    if core_has_jobs_api(routes):
        return False

    @routes.get("/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        try:
            answer = api.list_jobs(*_snapshot(queue), request.query)
        except api.JobsQueryError as e:
            return _error(bad_request("invalid_query", "Invalid jobs query", str(e)))
        answer["jobs"] = [view(request, job) for job in answer["jobs"]]
        return web.json_response(answer)

    @routes.get("/jobs/{job_id}")
    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        job = api.find_job(job_id, *_snapshot(queue))
        if job is None:
            return _error(not_found("job", job_id))
        return web.json_response(view(request, job))

    @routes.post("/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        try:
            may_cancel(request, job_id)
        except GovernorError as e:
            return _error(e)
        target = cancel_one(queue, job_id)
        if target == api.CANCEL_UNKNOWN:
            return _error(not_found("job", job_id))
        return web.json_response({"cancelled": target in (api.CANCEL_RUNNING, api.CANCEL_PENDING)})

    @routes.post("/jobs/cancel")
    async def cancel_jobs(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            return _error(bad_request("invalid_json", "Malformed JSON", str(e)))
        job_ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(job_ids, list):
            return _error(bad_request("invalid_request", "job_ids must be a list",
                                      'send {"job_ids": ["<uuid>", ...]}'))
        invalid = [str(j) for j in job_ids if not api.is_canonical_uuid(j)]
        if invalid:
            return _error(bad_request("invalid_prompt_id", "job_ids contains invalid id(s)",
                                      "job ids are UUIDs in canonical lowercase form", invalid_ids=invalid))
        try:
            for job_id in job_ids:
                may_cancel(request, job_id)
        except GovernorError as e:
            return _error(e)
        results = [cancel_one(queue, job_id) for job_id in job_ids]
        return web.json_response({"cancelled": any(r in (api.CANCEL_RUNNING, api.CANCEL_PENDING) for r in results)})

    return True
