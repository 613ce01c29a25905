"""``/view`` of an output file that another cluster server wrote: find the writer, proxy its answer.

The server that ran a prompt records, for each file its outputs name (``{filename, subfolder,
type}``), which server holds it: ``rg:{cluster}:file:<sha1>`` -> server id (set together with the
relayed ``executed`` events and the history entry, same TTL). When the local ``/view`` answers 404,
the middleware looks the request's ``(type, subfolder, filename)`` up; if another server wrote it,
it forwards ``GET <that server's registry URL>/view?<the same query>`` and streams the answer back.

Nothing from the request chooses where the request goes: the target is the URL the owning server
registered; the request path is fixed (``/view``); the query is forwarded as is (the owner applies
its own path checks). Answers over ``max_bytes`` are cut off (413 when announced by Content-Length).
With a shared output folder (``GOVERNOR_SHARED_OUTPUT=1``) this middleware is not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, web

log = logging.getLogger("restoration_governor.cluster_view")

VIEW_PATHS = frozenset({"/view", "/api/view"})
PROXY_HEADER = "X-Governor-Proxied"  # set on forwarded requests: the owner never forwards again
MAX_BYTES = 512 * 1024 * 1024
_FORWARDED_HEADERS = ("Content-Type", "Content-Disposition", "Cache-Control", "Last-Modified", "ETag")


def file_key(prefix: str, kind: str, subfolder: str, filename: str) -> str:
    """The index key of one output file (any strings: they are hashed, never used as a path)."""
    digest = hashlib.sha1("\0".join((kind or "output", subfolder or "", filename)).encode()).hexdigest()
    return f"{prefix}file:{digest}"


def output_files(outputs: Any) -> Iterator[tuple[str, str, str]]:
    """``(type, subfolder, filename)`` of every file named in a node's or a prompt's ``outputs``.

    ComfyUI's UI outputs are dicts of lists (``{"images": [{filename, subfolder, type}], ...}``),
    per node in a history entry; anything that is not such a file record is skipped.
    """
    if isinstance(outputs, dict):
        if isinstance(outputs.get("filename"), str):
            yield (str(outputs.get("type") or "output"), str(outputs.get("subfolder") or ""), outputs["filename"])
            return
        for value in outputs.values():
            yield from output_files(value)
    elif isinstance(outputs, list):
        for value in outputs:
            yield from output_files(value)


def safe_base_url(url: str) -> str | None:
    """``url`` without a trailing slash if it is a plain http(s) base URL, else None."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    return url.rstrip("/")


def make_view_proxy(owner_of: Callable[[str, str, str], str | None], server_url: Callable[[str], str | None],
                    server_id: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = 30.0):
    """The aiohttp middleware. ``owner_of(type, subfolder, filename)`` -> server id (blocking, run in a
    thread); ``server_url(server_id)`` -> its registered URL (blocking). Both may raise: then 404 stands."""

    @web.middleware
    async def cluster_view_proxy(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]):
        response = await _local(handler, request)
        if (response.status != 404 or request.method != "GET" or request.path not in VIEW_PATHS
                or request.headers.get(PROXY_HEADER) or "filename" not in request.query):
            return response
        q = request.query
        try:
            owner = await asyncio.to_thread(owner_of, q.get("type", "output"), q.get("subfolder", ""), q["filename"])
            base = await asyncio.to_thread(server_url, owner) if owner and owner != server_id else None
        except Exception as e:
            log.warning("cluster /view: owner lookup failed (%s)", e)
            return response
        base = safe_base_url(base or "")
        if base is None:
            return response
        return await _proxy(request, f"{base}/view", owner or "", max_bytes, timeout_s)

    return cluster_view_proxy


async def _local(handler, request: web.Request):
    try:
        return await handler(request)
    except web.HTTPNotFound as e:
        return e


async def _proxy(request: web.Request, target: str, owner: str, max_bytes: int, timeout_s: float):
    headers = {PROXY_HEADER: "1"}
    for name in ("Authorization", "X-Governor-Token"):  # the cluster's servers share their admin token
        if name in request.headers:
            headers[name] = request.headers[name]
    timeout = ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    response: web.StreamResponse | None = None
    try:
        async with ClientSession(timeout=timeout) as session, \
                session.get(target, params=list(request.query.items()), headers=headers,
                            allow_redirects=False) as upstream:
            if upstream.status != 200:
                return web.Response(status=404 if upstream.status == 404 else 502,
                                    text=f"server {owner} answered {upstream.status}")
            if upstream.content_length is not None and upstream.content_length > max_bytes:
                return web.Response(status=413, text=f"file on server {owner} is over {max_bytes} bytes")
            response = web.StreamResponse(status=200)
            for name in _FORWARDED_HEADERS:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            response.headers["X-Governor-Served-By"] = owner
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_chunked(1 << 16):
                sent += len(chunk)
                if sent > max_bytes:  # no Content-Length announced: stop at the cap
                    log.warning("cluster /view: %s from %s cut off at %d bytes", target, owner, max_bytes)
                    break
                await response.write(chunk)
            await response.write_eof()
            return response
    except Exception as e:  # any failure is a 502 (or a cut-off body once streaming began), never a 500
        log.warning("cluster /view: proxy to %s failed (%s)", owner, e)
        if response is not None and response.prepared:
            return response
        return web.Response(status=502, text=f"server {owner} could not be reached")
