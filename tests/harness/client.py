"""A small async ComfyUI client (aiohttp HTTP + WebSocket) for integration tests.

It submits API-format prompts, follows a prompt over the WebSocket until ComfyUI says it is done
(``executing`` with ``node: null``, ``execution_success`` or ``execution_error``) and reads
``/history``. It knows nothing about the governor beyond plain HTTP, so tests exercise the same
surface a user's script does.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]

    def ok(self) -> Response:
        assert self.status == 200, f"HTTP {self.status}: {self.body}"
        return self


@dataclass
class WsMessage:
    type: str
    data: Any
    at: float = field(default_factory=time.monotonic)


class EventStream:
    """Collects one WebSocket's JSON messages; tests wait on predicates over them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.messages: list[WsMessage] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # binary previews are not interesting here
            payload = json.loads(msg.data)
            async with self._changed:
                self.messages.append(WsMessage(payload.get("type", ""), payload.get("data")))
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[WsMessage], bool], timeout: float = 60.0) -> WsMessage:
        """The first message (already received or future) that satisfies ``predicate``."""
        async def _wait() -> WsMessage:
            seen = 0
            async with self._changed:
                while True:
                    for m in self.messages[seen:]:
                        if predicate(m):
                            return m
                    seen = len(self.messages)
                    await self._changed.wait()
        return await asyncio.wait_for(_wait(), timeout)

    def of_type(self, type_: str, prompt_id: str | None = None) -> list[WsMessage]:
        return [m for m in self.messages
                if m.type == type_ and (prompt_id is None or (m.data or {}).get("prompt_id") == prompt_id)]

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


def is_done_message(prompt_id: str) -> Callable[[WsMessage], bool]:
    def check(m: WsMessage) -> bool:
        data = m.data or {}
        if data.get("prompt_id") != prompt_id:
            return False
        if m.type == "executing" and data.get("node") is None:
            return True
        return m.type in ("execution_success", "execution_error")
    return check


class ComfyClient:
    """``async with ComfyClient(url) as c: ...``"""

    def __init__(self, base_url: str, client_id: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.session: aiohttp.ClientSession | None = None
        self._streams: list[EventStream] = []

    async def __aenter__(self) -> ComfyClient:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def __aexit__(self, *exc) -> None:
        for s in self._streams:
            await s.close()
        assert self.session is not None
        await self.session.close()

    # -- raw HTTP ------------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, json_body: Any = None, data: Any = None,
                      headers: Mapping[str, str] | None = None) -> Response:
        assert self.session is not None
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        async with self.session.request(method, self.base_url + path, **kwargs) as r:
            raw = await r.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Response(r.status, body, dict(r.headers))

    async def get(self, path: str, **kw) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw) -> Response:
        return await self.request("POST", path, json_body=body, **kw)

    async def patch(self, path: str, body: Any = None, **kw) -> Response:
        return await self.request("PATCH", path, json_body=body, **kw)

    # -- ComfyUI API ---------------------------------------------------------------------------
    async def submit(self, prompt: Mapping[str, Any], *, client_id: str | None = None,
                     extra_data: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                     front: bool | None = None, prompt_id: str | None = None, path: str = "/prompt") -> Response:
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id or self.client_id}
        if extra_data is not None:
            body["extra_data"] = dict(extra_data)
        if front is not None:
            body["front"] = front
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        return await self.post(path, body, headers=headers)

    async def queue_prompt(self, prompt: Mapping[str, Any], **kw) -> str:
        r = (await self.submit(prompt, **kw)).ok()
        return r.body["prompt_id"]

    async def events(self, client_id: str | None = None) -> EventStream:
        """Open a WebSocket as ``client_id`` (default: this client's id) and start collecting."""
        assert self.session is not None
        cid = client_id or self.client_id
        ws = await self.session.ws_connect(f"{self.base_url}/ws?clientId={cid}", heartbeat=20)
        stream = EventStream(ws, cid)
        self._streams.append(stream)
        await stream.wait_for(lambda m: m.type == "status", timeout=10)
        return stream

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        body = (await self.get(f"/history/{prompt_id}")).ok().body
        return body.get(prompt_id) if body else None

    async def wait_history(self, prompt_id: str, timeout: float = 120.0, poll: float = 0.2) -> dict[str, Any]:
        """Poll ``/history/{id}`` until the prompt's final entry exists (independent of WebSocket delivery)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = await self.history(prompt_id)
            if entry is not None and entry.get("status") is not None:
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"no history for {prompt_id} after {timeout}s")
            await asyncio.sleep(poll)

    async def run(self, prompt: Mapping[str, Any], timeout: float = 120.0, **kw) -> dict[str, Any]:
        """Submit, wait until done over the WebSocket, and return the history entry."""
        stream = await self.events(kw.get("client_id"))
        prompt_id = await self.queue_prompt(prompt, **kw)
        await stream.wait_for(is_done_message(prompt_id), timeout)
        return await self.wait_history(prompt_id, timeout=30)

    async def queue(self) -> dict[str, Any]:
        return (await self.get("/queue")).ok().body

    async def pending_ids_in_number_order(self) -> list[str]:
        q = await self.queue()
        return [item[1] for item in sorted(q["queue_pending"], key=lambda it: it[0])]

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        return (await self.get(path)).ok().body


def history_outcome(entry: Mapping[str, Any]) -> str:
    """'success', 'interrupted' or 'error', told apart by the status messages as ComfyUI records them."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return "success"
    kinds = [m[0] for m in status.get("messages", [])]
    return "interrupted" if "execution_interrupted" in kinds else "error"


def message_timestamps(entry: Mapping[str, Any]) -> dict[str, int]:
    """Event name -> ms timestamp from a history entry's status messages (last one wins)."""
    out: dict[str, int] = {}
    for name, data in (entry.get("status") or {}).get("messages", []):
        if isinstance(data, dict) and "timestamp" in data:
            out[name] = data["timestamp"]
    return out
