"""ComfyUI's own queue routes under an admin token: destructive ones need admin rights or ownership,
and listings show other clients' prompts only to admins (plain aiohttp, no ComfyUI import).

Without an admin token nothing here applies (a loopback-only set-up, as ComfyUI itself). With
one, a caller that is not an admin acts as the client it names (``client_id`` in the body,
``X-Client-Id`` or ``?client_id=``, as for the governor's own job routes):

* ``POST /queue {"clear": true}`` and ``POST /history {"clear": true}``: admin only;
* ``POST /queue {"delete": [...]}``, ``POST /history {"delete": [...]}``: only the caller's own
  prompts (ids the governor does not know are left to ComfyUI);
* ``POST /interrupt``: only when the prompt it stops (``prompt_id``, or whatever runs) is the caller's;
* ``GET /queue`` and ``GET /history``: other clients' items keep their place and id, but their
  prompt and ``extra_data`` (client id included) are emptied.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .auth import sees_everything
from .errors import GovernorError, forbidden
from .facade import Governor
from .http_admission import error_response, read_json, requester

QUEUE_PATHS = frozenset({"/queue", "/api/queue"})
HISTORY_PATHS = frozenset({"/history", "/api/history"})
INTERRUPT_PATHS = frozenset({"/interrupt", "/api/interrupt"})
HISTORY_ENTRY_PREFIXES = ("/history/", "/api/history/")


def is_guarded(path: str) -> bool:
    return path in QUEUE_PATHS or path in HISTORY_PATHS or path in INTERRUPT_PATHS \
        or path.startswith(HISTORY_ENTRY_PREFIXES)
_BODY_LIMIT = 1 << 20


def make_guard_middleware(governor: Governor):
    """The aiohttp middleware applying ``guard`` to ComfyUI's queue, history and interrupt routes."""

    @web.middleware
    async def core_route_guard(request: web.Request, handler):
        if not is_guarded(request.path):
            return await handler(request)
        try:
            return await guard(governor, request, handler)
        except GovernorError as e:
            return error_response(e)

    return core_route_guard


async def guard(governor: Governor, request: web.Request, handler) -> web.StreamResponse:
    """Check a request to a guarded path (``is_guarded``; raises 403), then let ComfyUI answer it."""
    admin = governor.is_admin(request.headers, request.remote)
    if sees_everything(governor.config, admin):
        return await handler(request)
    if request.method == "GET":
        return _redacted(await handler(request), requester(request, {}))
    if request.method != "POST":
        return await handler(request)
    body = await read_json(request, _BODY_LIMIT) if request.can_read_body else {}
    body = body if isinstance(body, dict) else {}
    me = requester(request, body)
    if request.path in INTERRUPT_PATHS:
        target = body.get("prompt_id")
        targets = [target] if isinstance(target, str) else list(governor.running)
        _require_own(governor, targets, me, "interrupt")
    else:
        what = "queue" if request.path in QUEUE_PATHS else "history"
        if body.get("clear"):
            raise forbidden(f"Clearing the {what} needs admin rights",
                            "an admin token is set: send Authorization: Bearer <token>; a client may delete "
                            "its own prompts with {\"delete\": [...]} and its client_id")
        deletes = body.get("delete")
        if isinstance(deletes, list):
            _require_own(governor, [d for d in deletes if isinstance(d, str)], me, f"delete from the {what}")
    return await handler(request)


def _require_own(governor: Governor, prompt_ids: list[str], me: str | None, action: str) -> None:
    for prompt_id in prompt_ids:
        try:
            owner = governor.find(prompt_id).client_id
        except GovernorError:
            continue  # unknown to the governor: ComfyUI answers for it
        if me is None or owner != me:
            raise forbidden(f"Not your prompt: cannot {action} it",
                            f"{prompt_id} belongs to another client; name your client_id (X-Client-Id) to act "
                            "on your own prompts, or use the admin token")


def _redacted(response: web.StreamResponse, me: str | None) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status != 200 or not response.body:
        return response
    data = json.loads(response.body)
    if isinstance(data, dict) and ("queue_running" in data or "queue_pending" in data):
        for key in ("queue_running", "queue_pending"):
            data[key] = [_hide_item(item, me) for item in data.get(key, [])]
    elif isinstance(data, dict):
        for entry in data.values():
            if isinstance(entry, dict) and isinstance(entry.get("prompt"), list):
                entry["prompt"] = _hide_item(entry["prompt"], me)
    return web.json_response(data, status=response.status)


def _hide_item(item: Any, me: str | None) -> Any:
    """A queue item ``[number, prompt_id, prompt, extra_data, outputs, ...]`` of another client, emptied."""
    if not isinstance(item, list) or len(item) < 4 or not isinstance(item[3], dict):
        return item
    if me is not None and item[3].get("client_id") == me:
        return item
    hidden = list(item)
    hidden[2], hidden[3] = {}, {}  # prompt, extra_data (client id included)
    if len(hidden) > 5:
        hidden[5] = {}  # sensitive extra_data, where a version lists it
    return hidden
