"""Relay of a prompt's client events and final history from the server that ran it to the one that admitted it.

In cluster mode server B may run a prompt that server A admitted; the client is connected to A.
B publishes what it would have sent to the client, and A re-sends it to the same sid.

Redis keys (prefix ``rg:{cluster}:``):

- ``relay:<origin>``  STREAM, one per admitting server, trimmed to about ``maxlen`` entries. Fields:
  ``k`` kind (``e`` JSON event, ``b`` binary event, ``h`` history entry), ``p`` prompt id,
  ``s`` sid ('' = every client), ``e`` event name (binary: its integer type), ``d`` payload
  (JSON text; binary payloads base64), ``f`` the publishing server.
- ``hist:<prompt_id>``  STRING, the final history entry (JSON), kept ``history_ttl`` seconds.

A stream rather than pub/sub: a subscriber that loses its connection for a moment resumes where it
stopped, and a restarted server picks up the history entries still in its stream. Live events
older than the subscriber's start are not re-sent (a client of the previous process is gone).
Plain Python: event names are the adapter's business (``comfy_cluster_relay``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from .redis_jobs import text

log = logging.getLogger("restoration_governor.cluster_relay")

STREAM_MAXLEN = 5000
HISTORY_TTL_S = 7 * 24 * 3600
BACKLOG_LIMIT = 1000


class ClusterView(Protocol):
    """What the relay needs of the cluster context (``cluster_context.ClusterContext``)."""

    redis: Any
    prefix: str
    server_id: str

    def origin_of(self, prompt_id: str) -> str | None:
        """The server that admitted ``prompt_id`` (None when unknown)."""


def stream_key(prefix: str, origin: str) -> str:
    return f"{prefix}relay:{origin}"


def history_key(prefix: str, prompt_id: str) -> str:
    return f"{prefix}hist:{prompt_id}"


class RelayRoutes:
    """Which events sent on this server belong to a prompt another server admitted, and where they go.

    ``route(prompt_id, sid)`` answers the origin server for an event (None: deliver locally only).
    An event naming its prompt is looked up (one Redis read per prompt, then cached); the sid of a
    remote prompt is remembered until an event of a local prompt goes to that sid, so events that
    carry no prompt id (binary previews) follow their sid. A failing lookup relays nothing; lookups pause ``retry_after_s``
    seconds after a failure, so that with Redis down no event (some are sent from the server's event
    loop) waits on a socket timeout more than once per pause.
    """

    def __init__(self, origin_of: Callable[[str], str | None], server_id: str, cache_size: int = 4096,
                 retry_after_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.origin_of = origin_of
        self.server_id = server_id
        self.cache_size = cache_size
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._down_until = 0.0  # after a failed lookup, Redis is not asked again before this
        self._origins: OrderedDict[str, str | None] = OrderedDict()
        self._by_sid: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def remote_origin(self, prompt_id: str) -> str | None:
        """The admitting server of ``prompt_id`` if it is not this one, else None."""
        with self._lock:
            if prompt_id in self._origins:
                return self._origins[prompt_id]
            if self.clock() < self._down_until:
                return None
        try:
            origin = self.origin_of(prompt_id)
        except Exception as e:  # Redis down: deliver locally; no event waits on Redis for a while
            log.warning("cluster relay: no origin for %s (%s)", prompt_id, e)
            with self._lock:
                self._down_until = self.clock() + self.retry_after_s
            return None
        remote = origin if origin and origin != self.server_id else None
        with self._lock:
            self._origins[prompt_id] = remote
            while len(self._origins) > self.cache_size:
                self._origins.popitem(last=False)
        return remote

    def route(self, prompt_id: str | None, sid: str | None) -> tuple[str, str] | None:
        """``(origin, prompt_id)`` when the event must be relayed, else None."""
        if prompt_id:
            origin = self.remote_origin(prompt_id)
            if origin is None:
                if sid:
                    with self._lock:
                        self._by_sid.pop(sid, None)
                return None
            if sid:
                with self._lock:
                    self._by_sid[sid] = (origin, prompt_id)
            return origin, prompt_id
        if sid:
            with self._lock:
                return self._by_sid.get(sid)
        return None


class RelayPublisher:
    """Writes events and history entries into the origin server's stream (one round trip each).

    Events that cannot be written (Redis unreachable) are dropped with a warning: they are live
    progress. History entries are kept (up to ``BACKLOG_LIMIT``) and written by ``flush``.
    """

    def __init__(self, client: Any, prefix: str, server_id: str, *, maxlen: int = STREAM_MAXLEN,
                 history_ttl: float = HISTORY_TTL_S) -> None:
        self.client = client
        self.prefix = prefix
        self.server_id = server_id
        self.maxlen = maxlen
        self.history_ttl = history_ttl
        self._backlog: list[tuple[str, str, dict[str, Any], list[str]]] = []
        self._lock = threading.Lock()

    def event(self, origin: str, prompt_id: str, event: str | int, data: Any, sid: str | None,
              extra_keys: dict[str, str] | None = None) -> bool:
        """Publish one event; ``data`` is JSON-able, or bytes for a binary event (``event`` its int type).

        ``extra_keys`` are strings set (with the history TTL) in the same transaction (the output
        file index). Returns False when Redis could not be reached.
        """
        binary = isinstance(data, (bytes, bytearray))
        fields = {"k": "b" if binary else "e", "p": prompt_id, "s": sid or "", "e": str(event), "f": self.server_id,
                  "d": base64.b64encode(bytes(data)).decode() if binary else json.dumps(data, default=str)}
        try:
            pipe = self.client.pipeline(transaction=True)
            for key, value in (extra_keys or {}).items():
                pipe.set(key, value, ex=int(self.history_ttl))
            pipe.xadd(stream_key(self.prefix, origin), fields, maxlen=self.maxlen, approximate=True)
            pipe.execute()
            return True
        except Exception as e:
            log.warning("cluster relay: event %s of %s not relayed to %s (%s)", event, prompt_id, origin, e)
            return False

    def history(self, origin: str, prompt_id: str, entry: dict[str, Any], file_keys: list[str] | None = None) -> bool:
        """Store ``entry`` as the prompt's final history and tell ``origin``; kept for ``flush`` on failure."""
        item = (origin, prompt_id, entry, list(file_keys or []))
        if self._write_history(*item):
            return True
        with self._lock:
            self._backlog.append(item)
            del self._backlog[:-BACKLOG_LIMIT]
        return False

    def flush(self) -> int:
        """Write the history entries that failed before; returns how many are still waiting."""
        with self._lock:
            waiting, self._backlog = self._backlog, []
        for n, item in enumerate(waiting):
            if not self._write_history(*item):
                with self._lock:
                    self._backlog[:0] = waiting[n:]
                break
        with self._lock:
            return len(self._backlog)

    def _write_history(self, origin: str, prompt_id: str, entry: dict[str, Any], file_keys: list[str]) -> bool:
        body = json.dumps(entry, default=str)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(history_key(self.prefix, prompt_id), body, ex=int(self.history_ttl))
            for key in file_keys:
                pipe.set(key, self.server_id, ex=int(self.history_ttl))
            pipe.xadd(stream_key(self.prefix, origin), {"k": "h", "p": prompt_id, "s": "", "e": "", "d": body,
                                                       "f": self.server_id}, maxlen=self.maxlen, approximate=True)
            pipe.execute()
            return True
        except Exception as e:
            log.warning("cluster relay: history of %s not yet relayed to %s (%s)", prompt_id, origin, e)
            return False


def fetch_history(client: Any, prefix: str, prompt_id: str) -> dict[str, Any] | None:
    """The final history entry another server stored for ``prompt_id``, or None."""
    raw = client.get(history_key(prefix, prompt_id))
    return None if raw is None else json.loads(text(raw))


class RelaySubscriber:
    """Reads this server's stream and hands each entry over.

    ``on_event(event, data, sid)``: ``event`` is a str (JSON event) or an int (binary, ``data`` bytes);
    ``sid`` None = every client. ``on_history(prompt_id, entry, server_id)``. ``poll`` does one read
    (for tests); ``start`` runs it on a daemon thread that survives Redis outages (it retries every
    ``retry_s`` seconds and resumes after the last entry it handled).
    """

    def __init__(self, client: Any, prefix: str, server_id: str, *,
                 on_event: Callable[[str | int, Any, str | None], None],
                 on_history: Callable[[str, dict[str, Any], str], None],
                 idle: Callable[[], Any] | None = None, retry_s: float = 1.0) -> None:
        self.client = client
        self.key = stream_key(prefix, server_id)
        self.on_event = on_event
        self.on_history = on_history
        self.idle = idle
        self.retry_s = retry_s
        self._last = "0"
        self._live_from: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governor-cluster-relay", daemon=True)

    def _mark_start(self) -> None:
        newest = self.client.xrevrange(self.key, count=1)
        self._live_from = text(newest[0][0]) if newest else "0-0"

    def poll(self, block_ms: int | None = None) -> int:
        """One read of the stream (waits up to ``block_ms``); returns the number of entries handled."""
        if self._live_from is None:
            self._mark_start()
        reply = self.client.xread({self.key: self._last}, count=500, block=block_ms)
        handled = 0
        for _stream, entries in reply or []:
            for entry_id, raw in entries:
                self._last = text(entry_id)
                self._handle(self._last, {text(k): text(v) for k, v in raw.items()})
                handled += 1
        return handled

    def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        kind = fields.get("k")
        try:
            if kind == "h":
                self.on_history(fields.get("p", ""), json.loads(fields["d"]), fields.get("f", ""))
            elif _after(entry_id, self._live_from or "0-0"):
                sid = fields.get("s") or None
                if kind == "b":
                    self.on_event(int(fields["e"]), base64.b64decode(fields["d"]), sid)
                elif kind == "e":
                    self.on_event(fields["e"], json.loads(fields["d"]), sid)
        except Exception:
            log.exception("cluster relay: entry %s of %s could not be delivered", entry_id, self.key)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self, join_s: float = 0.0) -> None:
        """Stop reading; wait up to ``join_s`` seconds for the thread (it ends within one read, 1 s)."""
        self._stop.set()
        if join_s > 0 and self._thread.is_alive():
            self._thread.join(join_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(block_ms=1000)
                if self.idle is not None:
                    self.idle()
            except Exception as e:
                log.warning("cluster relay: reading %s failed (%s); retrying", self.key, e)
                self._stop.wait(self.retry_s)


def _after(entry_id: str, mark: str) -> bool:
    a, _, b = entry_id.partition("-")
    c, _, d = mark.partition("-")
    return (int(a), int(b or 0)) > (int(c), int(d or 0))
