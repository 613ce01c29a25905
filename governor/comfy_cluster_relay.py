"""Binds the cluster relay (``cluster_relay``, ``cluster_relay_view``) to a running ComfyUI.

On the server that runs a prompt another server admitted (B), ``install``:
* hooks in *below* the governor's filter of retried attempts (its ``downstream``; or wraps
  ``send_sync`` when the filter is not installed yet), so a hidden event is not relayed either;
  every event for that prompt's client (JSON events naming the prompt, and binary previews sent to
  its sid while it runs) is published to the admitting server's stream;
* wraps the queue's ``task_done``: once ComfyUI wrote the prompt's final history entry, the entry
  (outputs included) is published before the end-of-prompt event, and its output files indexed.
On every server (A), a subscriber thread re-sends relayed events to the same sid with the original
``send_sync`` and stores relayed history entries into ``prompt_queue.history`` (so ``/history/{id}``
and ``/api/jobs`` answer); a middleware proxies ``/view`` of files another server wrote, unless
the output folder is shared (``GOVERNOR_SHARED_OUTPUT=1``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import struct
from io import BytesIO
from typing import Any

from . import comfy_cluster_inputs
from .cluster_relay import ClusterView, RelayPublisher, RelayRoutes, RelaySubscriber
from .cluster_relay_view import file_key, make_view_proxy, output_files

log = logging.getLogger("restoration_governor.cluster_relay")

PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 2, 3, 4  # protocol.BinaryEventTypes
RELAYED_JSON = frozenset({"execution_start", "execution_cached", "executing", "executed", "progress", "progress_state",
                          "execution_success", "execution_error", "execution_interrupted", "governor.job",
                          "governor.queue", "progress_text"})
RELAYED_BINARY = frozenset({PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA})


def shared_output_from_env() -> bool:
    return os.environ.get("GOVERNOR_SHARED_OUTPUT", "").strip().lower() in ("1", "true", "yes", "on")


def encode_binary(event: int, data: Any) -> tuple[int, bytes]:
    """A binary event as the bytes ComfyUI's ``send`` would put after the 4-byte event type.

    ``UNENCODED_PREVIEW_IMAGE`` data ``(format, PIL image, max_size)`` becomes a ``PREVIEW_IMAGE``
    (4-byte image type + JPEG/PNG); ``PREVIEW_IMAGE_WITH_METADATA`` data ``((format, image, max_size),
    metadata)`` becomes its length-prefixed metadata JSON + image; bytes pass unchanged.
    """
    if event == UNENCODED_PREVIEW_IMAGE:
        fmt, image = data[0], _contain(data[1], data[2])
        return PREVIEW_IMAGE, struct.pack(">I", 2 if fmt == "PNG" else 1) + _save(image, fmt)
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (fmt, image, max_size), metadata = data
        import json

        meta = json.dumps({**(metadata or {}), "image_type": "image/png" if fmt == "PNG" else "image/jpeg"}).encode()
        return event, struct.pack(">I", len(meta)) + meta + _save(_contain(image, max_size), fmt)
    return event, bytes(data)


def _contain(image, max_size):
    if max_size is None:
        return image
    from PIL import Image, ImageOps

    return ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)


def _save(image, fmt: str) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, quality=95, compress_level=1)
    return buffer.getvalue()


class ClusterRelay:
    """The relay of one server: publishing side (``relay_send``, ``task_finished``) and receiving side."""

    def __init__(self, ctx: ClusterView, send_local, *, store_history, send_binary_async=None) -> None:
        self.ctx = ctx
        self.send_local = send_local  # the original send_sync (never relays again)
        self.store_history = store_history
        self.send_binary_async = send_binary_async
        self.routes = RelayRoutes(ctx.origin_of, ctx.server_id)
        self.publisher = RelayPublisher(ctx.redis, ctx.prefix, ctx.server_id)
        self.subscriber: RelaySubscriber | None = None

    def relay_send(self, event, data, sid=None) -> None:
        """``send_sync``'s replacement: publish what belongs to another server's prompt, send locally too."""
        try:
            self._relay(event, data, sid)
        except Exception:  # the relay must never break ComfyUI's own events
            log.exception("cluster relay: event %s not relayed", event)
        self.send_local(event, data, sid)

    def _relay(self, event, data, sid) -> None:
        if isinstance(event, int):
            if event not in RELAYED_BINARY or (route := self.routes.route(None, sid)) is None:
                return
            kind, body = encode_binary(event, data)
            self.publisher.event(route[0], route[1], kind, body, sid)
            return
        if event not in RELAYED_JSON or not isinstance(data, dict):
            return
        prompt_id = data.get("prompt_id")
        route = self.routes.route(prompt_id if isinstance(prompt_id, str) else None, sid)
        if route is None:
            return
        files = {}
        if event == "executed":
            files = {file_key(self.ctx.prefix, *f): self.ctx.server_id for f in output_files(data.get("output"))}
        self.publisher.event(route[0], route[1], event, data, sid, files)

    def task_finished(self, prompt_id: str, entry: dict[str, Any] | None) -> None:
        """The worker finished ``prompt_id`` here; ``entry`` is its final history entry (None: retried)."""
        if entry is None:
            return
        origin = self.routes.remote_origin(prompt_id)
        if origin is None:
            return
        keys = [file_key(self.ctx.prefix, *f) for f in output_files(entry.get("outputs"))]
        self.publisher.history(origin, prompt_id, entry, keys)

    def deliver(self, event, data, sid) -> None:
        """A relayed event arrived: send it to the client as if this server had run the prompt."""
        if event == PREVIEW_IMAGE_WITH_METADATA and self.send_binary_async is not None:
            self.send_binary_async(event, data, sid)  # ComfyUI's send() would unpack it as (image, metadata)
        else:
            self.send_local(event, data, sid)

    def start(self, client) -> None:
        self.subscriber = RelaySubscriber(client, self.ctx.prefix, self.ctx.server_id, on_event=self.deliver,
                                          on_history=lambda pid, entry, _srv: self.store_history(pid, entry),
                                          idle=self.publisher.flush)
        self.subscriber.start()

    def stop(self, join_s: float = 0.0) -> None:
        if self.subscriber is not None:
            self.subscriber.stop(join_s)


def _history_store(prompt_server):
    def store(prompt_id: str, entry: dict[str, Any]) -> None:
        queue = prompt_server.prompt_queue
        limit = getattr(importlib.import_module("execution"), "MAXIMUM_HISTORY_SIZE", 10000)
        with queue.mutex:
            history = queue.history
            if prompt_id not in history and len(history) >= limit:
                history.pop(next(iter(history)))
            history[prompt_id] = entry
        prompt_server.queue_updated()

    return store


def _subscriber_client(client):
    """A client of its own for the blocking stream reads (a socket timeout longer than the block)."""
    import redis

    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": 10.0}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def install(prompt_server, ctx: ClusterView, *, shared_output: bool | None = None, registry=None) -> ClusterRelay:
    """Relay events and history of this server's prompts across the cluster; proxy ``/view``.

    Call at pack import, after the governed queue replaced ``prompt_queue`` (before or after the
    governor's ``send_sync`` filter: the relay always sits below it). A file's server URL for ``/view``
    comes from ``ctx.url_of`` when the context has it, else from ``registry`` (default ``ctx.registry``).
    """
    governed = prompt_server.send_sync
    below_filter = hasattr(governed, "downstream")  # the governor's filter of retried attempts is installed
    original = governed.downstream if below_filter else governed

    def send_binary_async(event, data, sid):
        asyncio.run_coroutine_threadsafe(prompt_server.send_bytes(event, data, sid), prompt_server.loop)

    relay = ClusterRelay(ctx, original, store_history=_history_store(prompt_server),
                         send_binary_async=send_binary_async)
    if below_filter:
        governed.downstream = relay.relay_send
    else:
        prompt_server.send_sync = relay.relay_send

    queue = prompt_server.prompt_queue
    task_done = queue.task_done
    input_failures = comfy_cluster_inputs.install(
        queue, ctx, lambda: importlib.import_module("folder_paths").get_input_directory())

    def relayed_task_done(item_id, history_result, status, *args, **kwargs):
        item = queue.currently_running.get(item_id)
        if item is not None and input_failures:
            comfy_cluster_inputs.explain(input_failures, item[1], status)
        task_done(item_id, history_result, status, *args, **kwargs)
        if item is not None:
            with queue.mutex:
                entry = queue.history.get(item[1])
            try:
                relay.task_finished(item[1], entry)
            except Exception:
                log.exception("cluster relay: history of %s not relayed", item[1])

    queue.task_done = relayed_task_done

    if not (shared_output_from_env() if shared_output is None else shared_output):
        registry = registry if registry is not None else getattr(ctx, "registry", None)
        url_of = getattr(ctx, "url_of", None) or (  # ClusterContext.url_of: one HGET of the server's record
            lambda server_id: next((s.url for s in registry.servers() if s.server_id == server_id), None))
        prompt_server.app.middlewares.append(make_view_proxy(
            lambda kind, sub, name: _text(ctx.redis.get(file_key(ctx.prefix, kind, sub, name))), url_of,
            ctx.server_id))

    async def on_startup(_app) -> None:
        relay.start(_subscriber_client(ctx.redis))

    async def on_shutdown(_app) -> None:
        relay.stop()

    prompt_server.app.on_startup.append(on_startup)
    prompt_server.app.on_shutdown.append(on_shutdown)
    return relay


def _text(value) -> str | None:
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))
