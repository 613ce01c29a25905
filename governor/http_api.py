"""The governor's HTTP surface: admission middleware and the control API (plain aiohttp).

``governor_middleware`` sits in ComfyUI's middleware list and sees ``POST /prompt`` (and
``/api/prompt``) before the core handler: it parses the governor's headers, applies caps,
idempotency and priority rules, lets the core handler validate and enqueue, and adds
``governor: {position, priority, eta_s}`` to the answer. It also checks uploads.
``register_routes`` adds ``/governor/...`` to a RouteTableDef (ComfyUI copies those to ``/api/...``).
Nothing here imports ComfyUI.
"""

from __future__ import annotations

import asyncio
import json
import re
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from .config import effective_admin_token, setting_docs
from .core import DRAINING, PAUSED, RUNNING, Governor, Ticket
from .errors import GovernorError, bad_request, forbidden
from .jobs import JobState, Priority
from .uploads import check_image_upload, too_large

ADMISSION_TICKET: ContextVar[Ticket | None] = ContextVar("restoration_governor_ticket", default=None)

PROMPT_PATHS = frozenset({"/prompt", "/api/prompt"})
UPLOAD_PATHS = frozenset({"/upload/image", "/upload/mask", "/api/upload/image", "/api/upload/mask"})
# Newer cores' assets route takes any file type, so only the size cap applies there; it is checked from
# Content-Length, before the body is read (the core handler streams it itself).
ASSET_UPLOAD_PATHS = frozenset({"/api/assets"})
_PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MULTIPART_SLACK = 256 * 1024


def error_response(error: GovernorError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


class _KeyLocks:
    """One asyncio lock per idempotency key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def __call__(self, key: str):
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        await lock.acquire()
        return _Held(self, key, lock)

    def _done(self, key: str, lock: asyncio.Lock) -> None:
        lock.release()
        _, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Held:
    def __init__(self, owner: _KeyLocks, key: str, lock: asyncio.Lock) -> None:
        self.owner, self.key, self.lock = owner, key, lock

    def release(self) -> None:
        self.owner._done(self.key, self.lock)


def make_middleware(governor: Governor):
    key_locks = _KeyLocks()

    @web.middleware
    async def governor_middleware(request: web.Request, handler):
        try:
            if request.method == "POST" and request.path in PROMPT_PATHS:
                return await _admit(governor, key_locks, request, handler)
            if request.method == "POST" and request.path in UPLOAD_PATHS:
                await _check_upload(governor, request)
            if request.method == "POST" and request.path in ASSET_UPLOAD_PATHS:
                _check_upload_size(governor, request)
        except GovernorError as e:
            return error_response(e)
        return await handler(request)

    return governor_middleware


async def _read_json(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise GovernorError(413, "request_too_large", "Request body too large",
                            f"{request.content_length} bytes; the limit is {limit}", {"limit": limit})
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise GovernorError(413, "request_too_large", "Request body too large", str(e)) from None
    if len(raw) > limit:
        raise GovernorError(413, "request_too_large", "Request body too large",
                            f"{len(raw)} bytes; the limit is {limit}", {"limit": limit})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request("invalid_json", "Malformed JSON", str(e)) from None


def _optional_str(data: dict, key: str, limit: int = 256) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise bad_request("invalid_request", f"Invalid {key}", f"{key} must be a non-empty string of at most "
                          f"{limit} characters")
    return value


def _parse_timeout(value: Any, source: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise bad_request("invalid_queue_timeout", "Invalid queue timeout",
                          f"{source} must be a positive number of seconds, got {value!r}")
    return seconds


async def _admit(governor: Governor, key_locks: _KeyLocks, request: web.Request, handler):
    data = await _read_json(request, governor.config.max_prompt_bytes)
    if not isinstance(data, dict):
        raise bad_request("invalid_request", "Invalid request", "the body must be a JSON object")
    if "prompt" not in data:
        return await handler(request)  # ComfyUI answers no_prompt itself
    prompt = data["prompt"]
    if not isinstance(prompt, dict) or not prompt:
        raise bad_request("invalid_prompt", "Invalid prompt", "prompt must be a non-empty object of nodes")
    client_id = _optional_str(data, "client_id")
    extra_data = data.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise bad_request("invalid_request", "Invalid extra_data", "extra_data must be an object")
    options = extra_data.get("governor", {})
    if not isinstance(options, dict):
        raise bad_request("invalid_request", "Invalid extra_data.governor", "extra_data.governor must be an object")
    prompt_id = data.get("prompt_id")
    if prompt_id is not None:
        if not isinstance(prompt_id, str) or not _PROMPT_ID.match(prompt_id):
            raise bad_request("invalid_prompt_id", "Invalid prompt_id",
                              "prompt_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
        if governor.is_known(prompt_id):
            raise GovernorError(409, "prompt_id_in_use", "prompt_id already queued",
                                f"a prompt with id {prompt_id} is queued or running", {"prompt_id": prompt_id})

    admin = governor.is_admin(request.headers, request.remote)
    notes: list[str] = []
    requested = request.headers.get("X-Priority", options.get("priority"))
    if requested is not None:
        try:
            priority = Priority.parse(requested)
        except ValueError as e:
            raise bad_request("invalid_priority", "Invalid priority", str(e), allowed=["high", "normal", "low"]) \
                from None
    elif data.get("front"):
        priority = Priority.HIGH if admin else Priority.NORMAL
        if not admin:
            notes.append("'queue front' needs the governor's admin rights here; queued as normal priority")
    else:
        priority = Priority.NORMAL
    if priority is Priority.HIGH and not admin:
        governor.metrics.rejections.labels("forbidden_priority").inc()
        raise forbidden("High priority needs the admin token",
                        "send Authorization: Bearer <token>, or use X-Priority: normal or low")

    timeout = None
    if "X-Queue-Timeout" in request.headers:
        timeout = _parse_timeout(request.headers["X-Queue-Timeout"], "X-Queue-Timeout")
    elif options.get("queue_timeout") is not None:
        timeout = _parse_timeout(options["queue_timeout"], "extra_data.governor.queue_timeout")
    if timeout is not None and governor.config.queue_timeout and timeout > governor.config.queue_timeout:
        notes.append(f"queue timeout can only be shortened; kept {governor.config.queue_timeout:g} s")

    key = request.headers.get("Idempotency-Key", options.get("idempotency_key"))
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        raise bad_request("invalid_idempotency_key", "Invalid Idempotency-Key", "use 1-255 characters")
    fair_key = client_id or f"ip:{request.remote or 'unknown'}"
    ticket = Ticket(fair_key=fair_key, priority=priority, queue_timeout=timeout, idempotency_key=key, notes=notes)

    held = await key_locks(key) if key is not None else None
    try:
        if key is not None:
            replay = governor.idempotency_lookup(key)
            if replay is not None:
                return web.json_response(replay, headers={"Idempotent-Replayed": "true"})
        governor.check_duplicate(fair_key, prompt)
        governor.reserve(fair_key)
        ticket.reserved = True
        token = ADMISSION_TICKET.set(ticket)
        try:
            response = await handler(request)
        finally:
            ADMISSION_TICKET.reset(token)
            if ticket.reserved:
                governor.unreserve(fair_key)
                ticket.reserved = False
        if response.status != 200 or ticket.job is None or not isinstance(response, web.Response):
            return response
        body = json.loads(response.body)
        info = governor.admission_info(ticket.job)
        if notes:
            info["notes"] = notes
        body["governor"] = info
        if key is not None:
            governor.idempotency_remember(key, body)
        governor.remember_prompt(fair_key, prompt, ticket.job.prompt_id)
        return web.json_response(body)
    finally:
        if held is not None:
            held.release()


def _check_upload_size(governor: Governor, request: web.Request) -> None:
    config = governor.config
    if request.content_length is not None and request.content_length > config.upload_max_bytes + _MULTIPART_SLACK:
        raise too_large(request.content_length, config)


async def _check_upload(governor: Governor, request: web.Request) -> None:
    config = governor.config
    _check_upload_size(governor, request)
    try:
        form = await request.post()  # aiohttp caches the parsed form: the core handler reads the same one
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request.content_length or 0, config) from None
    except ValueError as e:
        raise bad_request("invalid_upload", "Malformed upload", str(e)) from None
    upload = form.get("image")
    if upload is None or not hasattr(upload, "file"):
        return  # ComfyUI answers a form without an image itself
    data = upload.file.read()
    upload.file.seek(0)
    check_image_upload(data, upload.filename or "upload", config)


# =================================================================================================
# control API
# =================================================================================================
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
        data = await _read_json(request, 1 << 20)
        if not isinstance(data, dict):
            raise bad_request("invalid_request", "Invalid request", "the body must be a JSON object")
        return data

    def requester(request: web.Request, body: dict) -> str | None:
        return (body.get("client_id") if isinstance(body.get("client_id"), str) else None) \
            or request.headers.get("X-Client-Id") or request.query.get("client_id")

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
        return web.json_response(governor.status(can_admin=governor.is_admin(request.headers, request.remote)))

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
        return web.json_response(governor.list_jobs(q.get("client_id"), state, limit, offset))

    @routes.get("/governor/jobs/{prompt_id}")
    @guarded
    async def get_job(request: web.Request) -> web.Response:
        return web.json_response(governor.job_view(governor.find(request.match_info["prompt_id"])))

    def job_action(action: str, act) -> None:
        """``POST /governor/jobs/{id}/<action>``: ``act(prompt_id, body, client_id=, admin=)`` returns the job."""
        @routes.post(f"/governor/jobs/{{prompt_id}}/{action}")
        @guarded
        async def handler(request: web.Request) -> web.Response:
            body = await body_of(request)
            job = act(request.match_info["prompt_id"], body, client_id=requester(request, body),
                      admin=governor.is_admin(request.headers, request.remote))
            return web.json_response(governor.job_view(job))
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
