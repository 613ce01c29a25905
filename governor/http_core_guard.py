"""ComfyUI's own queue routes on a shared server: destructive ones need admin rights or ownership,
and listings show other clients' prompts only to admins (plain aiohttp, no ComfyUI import).

The ``guard_core_routes`` setting (``auth.core_routes_guarded``: ``auto`` = when an admin token is
set, ``on``, ``off``) switches this on; off, everything is as in ComfyUI. On, a caller that is not an
admin acts as ``auth.caller_identity`` (its ``Comfy-User`` in multi-user mode, else the client it
names — ``client_id`` in the body, ``X-Client-Id`` or ``?client_id=`` — else its peer address) and
owns the jobs ``auth.job_owner`` gives it:

* ``POST /queue {"clear": true}`` and ``POST /history {"clear": true}``: admin only;
* ``POST /queue {"delete": [...]}``, ``POST /history {"delete": [...]}``: only the caller's own
  prompts (ids the governor does not know are left to ComfyUI);
* ``POST /interrupt``: only when the prompt it stops (``prompt_id``, or whatever runs) is the caller's;
* ``POST /api/jobs/{id}/cancel`` and ``POST /api/jobs/cancel {"job_ids": [...]}``: own jobs only
  (:func:`check_cancel`, also what the governor's own jobs routes call);
* ``GET /queue``, ``GET /history`` and ``GET /api/jobs[/{id}]``: other clients' items keep their place,
  id and state, but their prompt and ``extra_data`` (client id included) are emptied (:func:`job_view`).

In multi-user mode the middleware also records the ``Comfy-User`` of each ``POST /prompt``
(:data:`REQUEST_USER`, read by the governed queue's ``put``).
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from .auth import caller_identity, core_routes_guarded, job_owner
from .errors import GovernorError, forbidden
from .facade import Governor
from .http_admission import PROMPT_PATHS, error_response, read_json, requester

QUEUE_PATHS = frozenset({"/queue", "/api/queue"})
HISTORY_PATHS = frozenset({"/history", "/api/history"})
INTERRUPT_PATHS = frozenset({"/interrupt", "/api/interrupt"})
HISTORY_ENTRY_PREFIXES = ("/history/", "/api/history/")
JOBS_PATHS = frozenset({"/jobs", "/api/jobs"})
JOBS_PREFIXES = ("/jobs/", "/api/jobs/")
JOBS_BATCH_CANCEL = frozenset({"/jobs/cancel", "/api/jobs/cancel"})
_BODY_LIMIT = 1 << 20

# The Comfy-User of the POST /prompt being handled (multi-user mode), for GovernedPromptQueue.put.
REQUEST_USER: ContextVar[str | None] = ContextVar("restoration_governor_request_user", default=None)


def is_guarded(path: str, *, jobs: bool = True) -> bool:
    """A path this guard checks; ``jobs=False`` leaves ``/api/jobs`` to the governor's own routes."""
    core = path in QUEUE_PATHS or path in HISTORY_PATHS or path in INTERRUPT_PATHS \
        or path.startswith(HISTORY_ENTRY_PREFIXES)
    return core or (jobs and (path in JOBS_PATHS or path.startswith(JOBS_PREFIXES)))


def make_guard_middleware(governor: Governor, *, multi_user: bool = False, core_jobs: bool = True):
    """The aiohttp middleware applying ``guard``. ``core_jobs``: the core serves ``/api/jobs`` (0.4x), so
    this middleware guards it; otherwise the governor's routes apply :func:`check_cancel` and :func:`job_view`."""

    @web.middleware
    async def core_route_guard(request: web.Request, handler):
        if multi_user and request.method == "POST" and request.path in PROMPT_PATHS:
            token = REQUEST_USER.set(request.headers.get("Comfy-User") or None)
            try:
                return await handler(request)
            finally:
                REQUEST_USER.reset(token)
        if not is_guarded(request.path, jobs=core_jobs):
            return await handler(request)
        try:
            return await guard(governor, request, handler, multi_user=multi_user)
        except GovernorError as e:
            return error_response(e)

    return core_route_guard


def _free_for(governor: Governor, request: web.Request) -> bool:
    """True when the guard does not apply to this caller (guard off, or an admin)."""
    return not core_routes_guarded(governor.config) or governor.is_admin(request.headers, request.remote)


def _me(request: web.Request, body: dict, multi_user: bool) -> str:
    return caller_identity(request.headers.get("Comfy-User"), requester(request, body), request.remote,
                           multi_user=multi_user)


async def guard(governor: Governor, request: web.Request, handler, *, multi_user: bool = False) -> web.StreamResponse:
    """Check a request to a guarded path (``is_guarded``; raises 403), then let ComfyUI answer it."""
    if _free_for(governor, request):
        return await handler(request)
    if request.method == "GET":
        return _redacted(governor, await handler(request), _me(request, {}, multi_user), multi_user)
    if request.method != "POST":
        return await handler(request)
    body = await read_json(request, _BODY_LIMIT) if request.can_read_body else {}
    body = body if isinstance(body, dict) else {}
    me = _me(request, body, multi_user)
    path = request.path
    if path in INTERRUPT_PATHS:
        target = body.get("prompt_id")
        targets = [target] if isinstance(target, str) else list(governor.running)
        _require_own(governor, targets, me, "interrupt", multi_user)
    elif path in JOBS_BATCH_CANCEL:
        ids = body.get("job_ids")
        _require_own(governor, [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [], me,
                     "cancel", multi_user)
    elif path.startswith(JOBS_PREFIXES) and path.endswith("/cancel"):
        _require_own(governor, [request.match_info.get("job_id") or path.split("/")[-2]], me, "cancel", multi_user)
    elif path in QUEUE_PATHS or path in HISTORY_PATHS:
        what = "queue" if path in QUEUE_PATHS else "history"
        if body.get("clear"):
            raise forbidden(f"Clearing the {what} needs admin rights",
                            "ComfyUI's queue routes are guarded here (guard_core_routes): send the admin token; "
                            "a client may delete its own prompts with {\"delete\": [...]} and its client_id")
        deletes = body.get("delete")
        if isinstance(deletes, list):
            _require_own(governor, [d for d in deletes if isinstance(d, str)], me, f"delete from the {what}",
                         multi_user)
    return await handler(request)


def check_cancel(governor: Governor, request: web.Request, prompt_id: str, *, multi_user: bool = False) -> None:
    """Raise 403 unless the caller may cancel ``prompt_id`` (guard off, admin, or its owner)."""
    if not _free_for(governor, request):
        _require_own(governor, [prompt_id], _me(request, {}, multi_user), "cancel", multi_user)


def job_view(governor: Governor, request: web.Request, job: dict[str, Any], *,
             multi_user: bool = False) -> dict[str, Any]:
    """An ``/api/jobs`` job as this caller may see it (another client's: no workflow, no workflow id)."""
    if _free_for(governor, request):
        return job
    return _hide_job(governor, job, _me(request, {}, multi_user), multi_user)


def _owner(governor: Governor, prompt_id: Any, multi_user: bool) -> str | None:
    """The owner of a job the governor knows; None for ids it does not know (ComfyUI answers for those)."""
    if not isinstance(prompt_id, str):
        return None
    try:
        return job_owner(governor.find(prompt_id), multi_user=multi_user)
    except GovernorError:
        return None


def _require_own(governor: Governor, prompt_ids: list[str], me: str, action: str, multi_user: bool) -> None:
    for prompt_id in prompt_ids:
        owner = _owner(governor, prompt_id, multi_user)
        if owner is not None and owner != me:
            raise forbidden(f"Not your prompt: cannot {action} it",
                            f"{prompt_id} belongs to another client; name your client_id (X-Client-Id) to act "
                            "on your own prompts, or use the admin token")


def _redacted(governor: Governor, response: web.StreamResponse, me: str, multi_user: bool) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status != 200 or not response.body:
        return response
    data = json.loads(response.body)
    if isinstance(data, dict) and ("queue_running" in data or "queue_pending" in data):
        for key in ("queue_running", "queue_pending"):
            data[key] = [_hide_item(governor, item, me, multi_user) for item in data.get(key, [])]
    elif isinstance(data, dict) and isinstance(data.get("jobs"), list):
        data["jobs"] = [_hide_job(governor, job, me, multi_user) for job in data["jobs"]]
    elif isinstance(data, dict) and "status" in data and isinstance(data.get("id"), str):
        data = _hide_job(governor, data, me, multi_user)
    elif isinstance(data, dict):
        for entry in data.values():
            if isinstance(entry, dict) and isinstance(entry.get("prompt"), list):
                entry["prompt"] = _hide_item(governor, entry["prompt"], me, multi_user)
    return web.json_response(data, status=response.status)


def _is_other(governor: Governor, prompt_id: Any, me: str, multi_user: bool) -> bool:
    owner = _owner(governor, prompt_id, multi_user)
    return owner is None or owner != me


def _hide_item(governor: Governor, item: Any, me: str, multi_user: bool) -> Any:
    """A queue item ``[number, prompt_id, prompt, extra_data, outputs, ...]`` of another client, emptied."""
    if not isinstance(item, list) or len(item) < 4 or not isinstance(item[3], dict):
        return item
    if not _is_other(governor, item[1], me, multi_user):
        return item
    hidden = list(item)
    hidden[2], hidden[3] = {}, {}  # prompt, extra_data (client id included)
    if len(hidden) > 5:
        hidden[5] = {}  # sensitive extra_data, where a version lists it
    return hidden


def _hide_job(governor: Governor, job: Any, me: str, multi_user: bool) -> Any:
    """An ``/api/jobs`` job of another client without what its prompt and ``extra_data`` reveal."""
    if not isinstance(job, dict) or not _is_other(governor, job.get("id"), me, multi_user):
        return job
    hidden = {k: v for k, v in job.items() if k not in ("workflow_id", "workflow")}
    if "workflow" in job:
        hidden["workflow"] = {"prompt": {}, "extra_data": {}}
    return hidden
