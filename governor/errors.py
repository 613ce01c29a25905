"""Errors in ComfyUI's JSON shape, so the graph editor and API clients show them like core errors.

ComfyUI answers a bad ``/prompt`` with ``{"error": {type, message, details, extra_info},
"node_errors": {}}``; the 1.32 frontend shows ``message: details`` in its error dialog. Every
4xx/5xx the governor produces uses the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GovernorError(Exception):
    """A request the governor refuses; becomes an HTTP error in ComfyUI's shape."""

    status: int
    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message}: {self.details}" if self.details else self.message

    def body(self) -> dict[str, Any]:
        return error_body(self.type, self.message, self.details, self.extra_info)


def error_body(type_: str, message: str, details: str = "", extra_info: dict[str, Any] | None = None) -> dict:
    return {
        "error": {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}},
        "node_errors": {},
    }


def bad_request(type_: str, message: str, details: str = "", **extra: Any) -> GovernorError:
    return GovernorError(400, type_, message, details, dict(extra))


def not_found(what: str, ident: str) -> GovernorError:
    return GovernorError(404, "not_found", f"Unknown {what}", f"no {what} with id {ident!r}", {"id": ident})


def forbidden(message: str, details: str = "") -> GovernorError:
    return GovernorError(403, "forbidden", message, details)


def conflict(type_: str, message: str, details: str = "", **extra: Any) -> GovernorError:
    return GovernorError(409, type_, message, details, dict(extra))
