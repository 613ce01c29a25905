"""Routes of the upload page, registered on ComfyUI's ``PromptServer.routes`` at pack import.

| route | what |
|---|---|
| ``GET /restoration`` | redirect to ``/restoration/`` |
| ``GET /restoration/`` | the page (``static/index.html``) |
| ``GET /restoration/static/{name}`` | the page's scripts and styles (a fixed list) |
| ``GET /restoration/workflows/{mode}.json`` | the shipped API template of a mode (``api_workflows/``) |
| ``GET /restoration/thumbs/{mode}.jpg`` | the template's card thumbnail (``example_workflows/``) |
| ``GET /restoration/strings/{lang}.json`` | the page's strings from ``locales/<lang>/main.json`` |

Everything else the page does goes through the public API (``/upload/image``, ``/prompt``,
``/governor/...``, ``/history``, ``/view``, ``/ws``), so it works against any server of a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from ..batch.workflows import MODES, template_path

PACK_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
STRINGS_SECTION = "restorationUpload"
LANGUAGES = ("en", "zh")


def _not_found(what: str) -> web.Response:
    return web.json_response({"error": {"type": "not_found", "message": "Not found", "details": what,
                                        "extra_info": {}}, "node_errors": {}}, status=404)


def register(routes: web.RouteTableDef) -> None:
    @routes.get("/restoration")
    async def page_redirect(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/restoration/")

    @routes.get("/restoration/")
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @routes.get("/restoration/static/{name}")
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC_DIR / name
        if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
            return _not_found(f"no page file {name!r}")
        return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                               "Cache-Control": "no-cache"})

    @routes.get("/restoration/workflows/{mode}.json")
    async def workflow(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        if mode not in MODES:
            return _not_found(f"no mode {mode!r}; modes: {', '.join(MODES)}")
        return web.FileResponse(template_path(mode), headers={"Content-Type": "application/json",
                                                              "Cache-Control": "no-cache"})

    @routes.get("/restoration/thumbs/{mode}.jpg")
    async def thumbnail(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        path = PACK_DIR / "example_workflows" / f"{MODES.get(mode, '')}.jpg"
        if mode not in MODES or not path.is_file():
            return _not_found(f"no thumbnail for {mode!r}")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

    @routes.get("/restoration/strings/{lang}.json")
    async def strings(request: web.Request) -> web.Response:
        lang = request.match_info["lang"]
        if lang not in LANGUAGES:
            return _not_found(f"no strings for {lang!r}; languages: {', '.join(LANGUAGES)}")
        main = json.loads((PACK_DIR / "locales" / lang / "main.json").read_text(encoding="utf-8"))
        return web.json_response(main.get(STRINGS_SECTION, {}), headers={"Cache-Control": "no-cache"})


def install(prompt_server) -> None:
    """Register the page's routes on a running ``PromptServer`` (before its routes are added to the app)."""
    register(prompt_server.routes)
