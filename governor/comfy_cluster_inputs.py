"""Input files of a prompt another cluster server admitted: fetched from that server before it runs.

A prompt names its input files in string inputs (LoadImage's ``image``: ``"photo.png"``,
``"sub/photo.png [input]"``). The photo was uploaded (``/upload/image``) to the server that
admitted the prompt; the server that takes it may not have it. So when this server takes a prompt
that another server admitted, each such name (a relative path with a media suffix, at most
``MAX_FILES``) that is missing from this server's input folder is fetched from the admitting server:
``GET <its registered URL>/view?filename=…&type=input&subfolder=…``, at most ``MAX_BYTES`` per file,
written atomically into this server's input folder under the same subfolder and name.

Nothing from the request chooses where the request goes: the admitting server comes from the job's
shared record (``origin_server``) and its URL from the cluster registry. A name that would leave the
input folder (absolute, ``..``) is never fetched. A 404 from the admitting server means it has no
such input file either (the name is something else): ComfyUI then reports the missing file as on a
single server. Any other failure is logged with the remedy; ComfyUI then fails the prompt with its
"No such file" error, to which ``explain`` adds the server, the file and the remedy. With a shared input folder (``GOVERNOR_SHARED_INPUT=1``) nothing is fetched.

Runs in ComfyUI's prompt worker thread, between the governor's dispatch and the execution (the
governor's lock is not held), so a slow fetch delays only this prompt.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .cluster_relay_view import PROXY_HEADER, safe_base_url

log = logging.getLogger("restoration_governor.cluster_inputs")

MEDIA_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".avif",
                            ".exr", ".mp4", ".webm", ".mov", ".mkv", ".wav", ".mp3", ".flac", ".ogg", ".m4a"})
MAX_FILES = 32  # input names looked at per prompt
MAX_BYTES = 256 * 1024 * 1024  # per fetched file
TIMEOUT_S = 30.0
REMEDY = ("upload the file to the server that runs the prompt, or mount one input folder on every server "
          "and set GOVERNOR_SHARED_INPUT=1 (docs/cluster.md, \"Input files\")")


class InputFetchError(RuntimeError):
    """An input file is on another server and could not be fetched (the message names both and the remedy)."""


def shared_input_from_env() -> bool:
    return os.environ.get("GOVERNOR_SHARED_INPUT", "").strip().lower() in ("1", "true", "yes")


def input_names(prompt: Any) -> list[tuple[str, str]]:
    """``(subfolder, filename)`` of every string input that names a media file in the input folder."""
    out: list[tuple[str, str]] = []
    for node in (prompt or {}).values() if isinstance(prompt, dict) else ():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for value in (inputs or {}).values() if isinstance(inputs, dict) else ():
            name = _parse(value)
            if name is not None and name not in out:
                out.append(name)
    return out[:MAX_FILES]


def _parse(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or "\n" in value or len(value) > 512:
        return None
    value = value.strip()
    if value.endswith("]"):  # ComfyUI's annotated names: "x.png [input]"; [output] / [temp] are not inputs
        if not value.endswith(" [input]"):
            return None
        value = value[: -len(" [input]")]
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name or path.suffix.lower() not in MEDIA_SUFFIXES:
        return None
    sub = str(path.parent)
    return ("" if sub == "." else sub, path.name)


def missing_inputs(prompt: Any, input_dir: Path) -> list[tuple[str, str]]:
    return [(sub, name) for sub, name in input_names(prompt) if not (input_dir / sub / name).is_file()]


def fetch(base_url: str, subfolder: str, filename: str, input_dir: Path, *, max_bytes: int = MAX_BYTES,
          timeout_s: float = TIMEOUT_S) -> Path | None:
    """Copy one input file from ``base_url`` into ``input_dir``; None if that server has no such file
    (404). Raises ``OSError`` / ``urllib.error.URLError`` / ``ValueError`` (over ``max_bytes``)."""
    root = input_dir.resolve()
    target = (root / subfolder / filename).resolve()
    if root not in target.parents:
        raise ValueError(f"{subfolder}/{filename} would leave the input folder")
    query = urllib.parse.urlencode({"filename": filename, "type": "input", "subfolder": subfolder})
    request = urllib.request.Request(f"{base_url}/view?{query}", headers={PROXY_HEADER: "1"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # a registered http(s) URL
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    with response:
        length = response.headers.get("Content-Length")
        if length is not None and int(length) > max_bytes:
            raise ValueError(f"it is {int(length)} bytes, over the {max_bytes}-byte cap")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as f:
                size = 0
                while chunk := response.read(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValueError(f"it is over the {max_bytes}-byte cap")
                    f.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def prepare(prompt_id: str, prompt: Any, input_dir: Path, origin_of: Callable[[str], str | None],
            url_of: Callable[[str], str | None], server_id: str, **limits: Any) -> list[Path]:
    """Fetch the input files ``prompt`` needs from the server that admitted it; the files written.
    Nothing when none is missing or this server admitted it. Raises ``InputFetchError``."""
    missing = missing_inputs(prompt, input_dir)
    if not missing:
        return []
    origin = origin_of(prompt_id)
    if not origin or origin == server_id:
        return []
    base = safe_base_url(url_of(origin) or "")
    fetched: list[Path] = []
    for sub, name in missing:
        shown = f"{sub}/{name}" if sub else name
        if base is None:
            raise InputFetchError(f"input file {shown!r} of prompt {prompt_id} is on server {origin!r}, which "
                                  f"has no usable URL in the cluster registry; {REMEDY}")
        try:
            path = fetch(base, sub, name, input_dir, **limits)
        except Exception as e:
            raise InputFetchError(f"input file {shown!r} of prompt {prompt_id} is on server {origin!r} ({base}) "
                                  f"and could not be fetched ({e}); {REMEDY}") from e
        if path is not None:
            log.info("prompt %s: fetched input %s from server %s", prompt_id, shown, origin)
            fetched.append(path)
    return fetched


def explain(failures: dict[str, str], prompt_id: str, status: Any) -> None:
    """Add the failed fetch's message (server, file, remedy) to the ``execution_error`` of the prompt's
    final ``status`` (ComfyUI's ``(status_str, completed, messages)``), so its history and the
    governor's error record say why the file was missing."""
    note = failures.pop(prompt_id, None)
    for message in (getattr(status, "messages", None) or []) if note else []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and message[0] == "execution_error" \
                and isinstance(message[1], dict):
            message[1]["exception_message"] = f"{message[1].get('exception_message', '')}\n{note}".strip()


def install(queue: Any, ctx: Any, input_dir: Callable[[], str]) -> dict[str, str]:
    """Wrap ``queue.get`` (ComfyUI's prompt worker calls it): before a prompt admitted elsewhere runs,
    fetch its missing input files. Errors are logged (with the remedy), never raised into the worker;
    the returned dict (prompt id -> message, at most ``MAX_FILES`` kept) is what ``explain`` adds."""
    failures: dict[str, str] = {}
    get = getattr(queue, "get", None)
    if get is None or shared_input_from_env():
        return failures

    def get_with_inputs(*args, **kwargs):
        result = get(*args, **kwargs)
        item = result[0] if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], tuple) else None
        if item is not None and len(item) > 2:
            try:
                prepare(str(item[1]), item[2], Path(input_dir()), ctx.origin_of, ctx.url_of, ctx.server_id)
            except Exception as e:
                log.error("%s", e)
                while len(failures) >= MAX_FILES:
                    failures.pop(next(iter(failures)))
                failures[str(item[1])] = str(e)
        return result

    queue.get = get_with_inputs
    return failures
