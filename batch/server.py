"""The governed ComfyUI server as the batch sees it: a few HTTP calls with patient retries.

* 429 (queue full): wait what ``Retry-After`` says (or 5 s), then ask again — forever, since the
  queue drains by itself; each wait is reported through ``on_wait``.
* 503 (draining, restarting), connection refused or reset, timeouts: retry with exponential
  backoff (1 s doubling to 30 s) for up to ``patience`` seconds, reported the same way.
* any other 4xx/5xx: ``ServerError`` with ComfyUI's error message, for the caller to report.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

Waiting = Callable[[str, float], None]  # (why, seconds) before a retry


class ServerError(RuntimeError):
    """A refusal that retrying cannot fix. ``status``: HTTP status; ``type``: ComfyUI's ``error.type``."""

    def __init__(self, status: int, message: str, type_: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.type = type_


class ServerGone(RuntimeError):
    """The server stayed unreachable (or kept answering 503) for longer than the client's patience."""


def _error_text(status: int, body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        text = ": ".join(str(p) for p in (err.get("message"), err.get("details")) if p)
        node_errors = body.get("node_errors") or {}
        for node_id, info in node_errors.items():
            for e in info.get("errors", []) if isinstance(info, dict) else []:
                text += f"; node {node_id}: {e.get('message', '')} {e.get('details', '')}".rstrip()
        return text or f"HTTP {status}", str(err.get("type", ""))
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], ""
    return (str(body)[:300] if body else f"HTTP {status}"), ""


class Server:
    """An aiohttp session bound to one server URL. Use as ``async with Server(url) as s``."""

    def __init__(self, url: str, *, token: str | None = None, patience: float = 600.0,
                 on_wait: Waiting | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.patience = patience
        self.on_wait = on_wait or (lambda why, seconds: None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Server:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300, sock_connect=10))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, json_body: Any = None, data: Any = None,
                      headers: Mapping[str, str] | None = None, raw: bool = False) -> tuple[Any, Mapping[str, str]]:
        """``(body, headers)`` of the first answer that is not a 429/503/connection failure."""
        assert self._session is not None, "use Server as an async context manager"
        hdrs = dict(headers or {})
        if self.token:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        delay, waited = 1.0, 0.0
        while True:
            try:
                payload = data() if callable(data) else data  # multipart bodies cannot be re-sent
                async with self._session.request(method, self.url + path, json=json_body, data=payload,
                                                 headers=hdrs) as r:
                    content = await r.read()
                    status, rheaders = r.status, r.headers
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, aiohttp.ClientPayloadError) as e:
                status, content, rheaders, why = 0, b"", {}, f"server unreachable ({type(e).__name__})"
            else:
                why = ""
            if status == 429:
                wait = _retry_after(rheaders, 5.0)
                self.on_wait("server busy (queue full)", wait)
                await asyncio.sleep(wait)
                continue
            if status in (0, 502, 503, 504):
                if waited >= self.patience:
                    raise ServerGone(f"{why or f'HTTP {status}'} for {waited:.0f} s at {self.url}")
                wait = min(_retry_after(rheaders, delay), 60.0)
                self.on_wait(why or ("server unavailable (draining or restarting)" if status == 503
                                     else f"HTTP {status}"), wait)
                await asyncio.sleep(wait)
                waited += wait
                delay = min(delay * 2, 30.0)
                continue
            body: Any = content if raw and status < 400 else _json_or_text(content)
            if status >= 400:
                message, type_ = _error_text(status, body)
                raise ServerError(status, message, type_)
            return body, rheaders

    async def get_json(self, path: str) -> Any:
        return (await self.request("GET", path))[0]

    async def upload(self, name: str, data: bytes, subfolder: str) -> str:
        """Upload ``data`` as ``input/<subfolder>/<name>`` (overwrite: same name = same bytes); the loader's value."""
        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("image", data, filename=name, content_type="application/octet-stream")
            f.add_field("subfolder", subfolder)
            f.add_field("overwrite", "true")
            return f
        body, _ = await self.request("POST", "/upload/image", data=form)
        folder = body.get("subfolder") or ""
        return f"{folder}/{body['name']}" if folder else body["name"]

    async def submit(self, prompt: Mapping[str, Any], *, client_id: str, key: str,
                     priority: str) -> tuple[dict[str, Any], bool]:
        """POST /prompt. ``(answer, replayed)``: replayed when the key was known (no new prompt)."""
        body, headers = await self.request(
            "POST", "/prompt", json_body={"prompt": prompt, "client_id": client_id},
            headers={"Idempotency-Key": key, "X-Priority": priority})
        return body, headers.get("Idempotent-Replayed", "").lower() == "true"

    async def job(self, prompt_id: str) -> dict[str, Any] | None:
        """The governor's record of a prompt, or None when this server does not know it."""
        try:
            return await self.get_json(f"/governor/jobs/{prompt_id}")
        except ServerError as e:
            if e.status == 404:
                return None
            raise

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        entry = await self.get_json(f"/history/{prompt_id}")
        return entry.get(prompt_id) if isinstance(entry, dict) else None

    async def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        from urllib.parse import urlencode

        query = urlencode({"filename": filename, "subfolder": subfolder, "type": type_})
        return (await self.request("GET", f"/view?{query}", raw=True))[0]


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    try:
        return max(0.1, float(headers.get("Retry-After", "")))
    except ValueError:
        return default


def _json_or_text(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")
