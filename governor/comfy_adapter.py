"""Binds the governor to a running ComfyUI ``PromptServer`` (placeholder: health route only)."""

from __future__ import annotations

from aiohttp import web

from . import __version__


def install(prompt_server) -> None:
    routes = prompt_server.routes

    @routes.get("/governor/health")
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__})
