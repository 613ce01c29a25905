"""Checks on ComfyUI's upload routes, applied by the admission middleware before the core handler runs.

``/upload/image`` and ``/upload/mask`` get the size cap, a sniffed image format and a pixel cap, and
names that stay inside the input folder; newer cores' ``/api/assets`` gets the size cap. The core's own
4xx answers (often an empty body) are rewritten into ComfyUI's error shape.
"""

from __future__ import annotations

from aiohttp import web

from .config import GovernorConfig
from .errors import bad_request, error_body
from .uploads import check_image_upload, escapes_input_folder, too_large

UPLOAD_PATHS = frozenset({"/upload/image", "/upload/mask", "/api/upload/image", "/api/upload/mask"})
# Newer cores' assets route takes any file type, so only the size cap applies there; it is checked from
# Content-Length, before the body is read (the core handler streams it itself).
ASSET_UPLOAD_PATHS = frozenset({"/api/assets"})
_MULTIPART_SLACK = 256 * 1024


def check_upload_size(config: GovernorConfig, request: web.Request) -> None:
    """413 when the declared body is larger than ``upload_max_bytes`` (plus multipart framing)."""
    if request.content_length is not None and request.content_length > config.upload_max_bytes + _MULTIPART_SLACK:
        raise too_large(request.content_length, config)


async def check_upload(config: GovernorConfig, request: web.Request) -> None:
    """Size cap, a field named ``image``, a name that stays in the input folder, and the image checks."""
    check_upload_size(config, request)
    try:
        form = await request.post()  # aiohttp caches the parsed form: the core handler reads the same one
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request.content_length or 0, config) from None
    except ValueError as e:
        raise bad_request("invalid_upload", "Malformed upload", str(e)) from None
    upload = form.get("image")
    if upload is None or not hasattr(upload, "file"):
        raise bad_request("invalid_upload", "No image in the upload",
                          "send a multipart/form-data body with the file in a field named 'image'")
    for field, value in (("file name", upload.filename or ""), ("subfolder", str(form.get("subfolder") or ""))):
        if escapes_input_folder(value, allow_subfolders=field == "subfolder"):
            raise bad_request("invalid_upload", f"Invalid {field}",
                              f"{value!r} points outside ComfyUI's input folder; use a plain name", field=field)
    data = upload.file.read()
    upload.file.seek(0)
    check_image_upload(data, upload.filename or "upload", config)


def in_error_shape(response: web.StreamResponse) -> web.StreamResponse:
    """A 4xx from ComfyUI's own upload handler (often an empty body) in ComfyUI's error shape."""
    if not (400 <= response.status < 500) or not isinstance(response, web.Response) \
            or response.content_type == "application/json":
        return response
    text = (response.text or "").strip() if response.body else ""
    body = error_body("invalid_upload", "Upload refused", text or f"ComfyUI answered {response.status} "
                      "(the file name, subfolder or form was not accepted)")
    return web.json_response(body, status=response.status)

