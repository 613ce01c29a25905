"""Admission over HTTP: the middleware in front of ComfyUI's ``/prompt`` and upload routes (plain aiohttp).

``make_middleware`` returns a handler that sits in ComfyUI's middleware list and sees
``POST /prompt`` (and ``/api/prompt``) before the core handler: it parses the governor's headers,
applies caps, idempotency and priority rules, lets the core handler validate and enqueue (the
decision reaches ``Governor.admit`` through ``ADMISSION_TICKET``), and adds
``governor: {position, priority, eta_s, ...}`` to the answer. It also checks uploads.
Nothing here imports ComfyUI.
"""

from __future__ import annotations

import asyncio
import json
import math
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from .admission import Ticket, prompt_digest, queue_timeout_for, timeout_warning
from .auth import require_priority_right
from .errors import GovernorError, bad_request
from .facade import Governor
from .http_uploads import ASSET_UPLOAD_PATHS, UPLOAD_PATHS, check_upload, check_upload_size, in_error_shape
from .jobs import Priority
from .prompt_ids import CoreRule, check_prompt_id, prompt_id_in_use

ADMISSION_TICKET: ContextVar[Ticket | None] = ContextVar("restoration_governor_ticket", default=None)

PROMPT_PATHS = frozenset({"/prompt", "/api/prompt"})
MAX_JSON_DEPTH = 256  # ComfyUI prompts nest a few levels; far deeper bodies only exhaust the stack


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


def make_middleware(governor: Governor, prompt_id_rule: CoreRule | None = None):
    """The admission middleware; ``prompt_id_rule``: the core's job-id validator where it has one."""
    key_locks = _KeyLocks()

    @web.middleware
    async def governor_middleware(request: web.Request, handler):
        try:
            if request.method == "POST" and request.path in PROMPT_PATHS:
                return await _admit(governor, key_locks, request, handler, prompt_id_rule)
            if request.method == "POST" and request.path in UPLOAD_PATHS:
                await check_upload(governor.config, request)
                return in_error_shape(await handler(request))
            if request.method == "POST" and request.path in ASSET_UPLOAD_PATHS:
                check_upload_size(governor.config, request)
        except GovernorError as e:
            return error_response(e)
        return await handler(request)

    return governor_middleware


async def read_json(request: web.Request, limit: int) -> Any:
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
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request("invalid_json", "Malformed JSON", str(e)) from None
    except RecursionError:
        data = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = _depth(data, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise bad_request("invalid_json", "JSON nested too deeply",
                          f"the body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep",
                          limit=MAX_JSON_DEPTH)
    return data


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests lists and dicts, counted without recursion; stops past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def requester(request: web.Request, body: dict) -> str | None:
    """The client id a request acts as: ``client_id`` in the body, ``X-Client-Id`` or ``?client_id=``."""
    return (body.get("client_id") if isinstance(body.get("client_id"), str) else None) \
        or request.headers.get("X-Client-Id") or request.query.get("client_id")


def _request_digest(data: dict, headers) -> str:
    """What makes two requests "the same" for an Idempotency-Key: the body without the key itself, and
    the headers that change what is admitted (X-Priority, X-Queue-Timeout)."""
    chosen = {h: headers[h] for h in ("X-Priority", "X-Queue-Timeout") if h in headers}
    if chosen:
        data = {**data, "governor_headers": chosen}
    extra = data.get("extra_data")
    options = extra.get("governor") if isinstance(extra, dict) else None
    if isinstance(options, dict) and "idempotency_key" in options:
        options = {k: v for k, v in options.items() if k != "idempotency_key"}
        extra = {**extra, "governor": options}
        if not options:
            del extra["governor"]
        data = {**data, "extra_data": extra}
        if not extra:
            del data["extra_data"]
    return prompt_digest(data)


def _optional_str(data: dict, key: str, limit: int = 256) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise bad_request("invalid_request", f"Invalid {key}", f"{key} must be a non-empty string of at most "
                          f"{limit} characters")
    return value


def _check_number(value: Any) -> None:
    """ComfyUI reads ``number`` with ``float()``: refuse what it cannot read (it would answer a 500)."""
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise bad_request("invalid_request", "Invalid number", f"number must be a finite number, got {value!r}")


def _parse_timeout(value: Any, source: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise bad_request("invalid_queue_timeout", "Invalid queue timeout",
                          f"{source} must be a positive number of seconds, got {value!r}")
    return seconds


async def _admit(governor: Governor, key_locks: _KeyLocks, request: web.Request, handler,
                 prompt_id_rule: CoreRule | None = None):
    data = await read_json(request, governor.config.max_prompt_bytes)
    if not isinstance(data, dict):
        raise bad_request("invalid_request", "Invalid request", "the body must be a JSON object")
    if "prompt" not in data:
        return await handler(request)  # ComfyUI answers no_prompt itself
    prompt = data["prompt"]
    if not isinstance(prompt, dict) or not prompt:
        raise bad_request("invalid_prompt", "Invalid prompt", "prompt must be a non-empty object of nodes")
    _check_number(data.get("number"))
    client_id = _optional_str(data, "client_id")
    extra_data = data.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise bad_request("invalid_request", "Invalid extra_data", "extra_data must be an object")
    options = extra_data.get("governor", {})
    if not isinstance(options, dict):
        raise bad_request("invalid_request", "Invalid extra_data.governor", "extra_data.governor must be an object")
    chosen_id = None if data.get("prompt_id") is None else check_prompt_id(data["prompt_id"], prompt_id_rule)

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
    try:
        require_priority_right(priority, admin)
    except GovernorError:
        governor.metrics.rejections.labels("forbidden_priority").inc()
        raise

    timeout = None
    if "X-Queue-Timeout" in request.headers:
        timeout = _parse_timeout(request.headers["X-Queue-Timeout"], "X-Queue-Timeout")
    elif options.get("queue_timeout") is not None:
        timeout = _parse_timeout(options["queue_timeout"], "extra_data.governor.queue_timeout")
    _, timeout_note = queue_timeout_for(governor.config, priority, timeout)
    if timeout_note:
        notes.append(timeout_note)

    key = request.headers.get("Idempotency-Key", options.get("idempotency_key"))
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        raise bad_request("invalid_idempotency_key", "Invalid Idempotency-Key", "use 1-255 characters")
    fair_key = client_id or f"ip:{request.remote or 'unknown'}"
    ticket = Ticket(fair_key=fair_key, priority=priority, queue_timeout=timeout, idempotency_key=key)

    request_digest = _request_digest(data, request.headers) if key is not None else None
    held = await key_locks(key) if key is not None else None
    try:
        if key is not None:
            replay = governor.idempotency_lookup(key, request_digest)
            if replay is not None:
                return web.json_response(replay, headers={"Idempotent-Replayed": "true"})
        if chosen_id is not None and governor.is_known(chosen_id):  # after a replay: a retry is not a reuse
            raise prompt_id_in_use(chosen_id)
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
        warning = timeout_warning(info, priority)
        if warning:
            notes.append(warning)
        if notes:
            info["notes"] = notes
        body["governor"] = info
        if key is not None:
            governor.idempotency_remember(key, body, request_digest)
        governor.remember_prompt(fair_key, prompt, ticket.job.prompt_id)
        return web.json_response(body)
    finally:
        if held is not None:
            held.release()
