"""Why an attempt failed, whether it is worth another try, how long to wait, and the error record.

The adapter turns what ComfyUI reports about a failed attempt into an ``ErrorReport``
(``comfy_protocol.report_from_messages``): the exception's type and message, the node, or that it
was interrupted. That is all there is to classify from:

* ``oom``: ``torch.cuda.OutOfMemoryError`` (ComfyUI's ``OOM_EXCEPTION``) or an "out of memory"
  message; retried after models are released.
* ``transient``: exception types named in ``transient_exceptions``; retried.
* ``error``: any other node exception; retried only with ``retry_node_errors``.
* ``interrupted``: never retried (a user, a cancel or a timeout stopped it on purpose).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .jobs import Reason

OOM_TYPE_SUFFIXES = ("OutOfMemoryError", "OOM_EXCEPTION")
MESSAGE_LIMIT = 2000  # characters of an exception message kept in a record


def short_type_name(exception_type: str | None) -> str | None:
    """``DownloadError`` for ComfyUI's ``…/custom_nodes/pack.module.DownloadError`` (the last dotted
    part; a custom node's module name is its file path). None for none."""
    if not exception_type:
        return None
    return exception_type.rsplit(".", 1)[-1] or exception_type


def clip_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` within ``limit`` characters, cut in the middle: its start (what failed) and its end
    (where exceptions put the remedy) are both kept."""
    text = text.strip()
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep].rstrip()} … {text[-keep:].lstrip()}"


@dataclass(frozen=True)
class ErrorReport:
    """What the server said about one failed attempt, in the governor's terms."""

    exception_type: str | None = None  # as the server names it, possibly dotted
    message: str = ""
    node_id: str | None = None
    node_type: str | None = None
    interrupted: bool = False  # stopped by an interrupt, with no exception


def error_record(attempt: int, at: float, reason: Reason | str, message: str, *, exception_type: str | None = None,
                 node_id: str | None = None, node_type: str | None = None) -> dict[str, Any]:
    """One entry of ``Job.errors`` (persisted, shown by the API and in history): the only place it is built."""
    return {
        "attempt": attempt, "at": at, "reason": reason.value if isinstance(reason, Reason) else reason,
        "exception_type": exception_type, "message": message, "node_id": node_id, "node_type": node_type,
    }


@dataclass(frozen=True)
class Failure:
    reason: Reason
    exception_type: str | None  # the short name (``short_type_name``)
    message: str  # clipped to MESSAGE_LIMIT, start and end kept
    node_id: str | None = None
    node_type: str | None = None

    def record(self, attempt: int, at: float, reason: Reason | None = None) -> dict[str, Any]:
        """The error record of this failure; ``reason`` overrides the class (a cancel, an exec timeout)."""
        return error_record(attempt, at, reason or self.reason, self.message, exception_type=self.exception_type,
                            node_id=self.node_id, node_type=self.node_type)


def classify(report: ErrorReport | None, transient_exceptions: list[str] | tuple[str, ...]) -> Failure:
    """Classify a failed attempt from what the server reported (None: it said nothing)."""
    if report is None:
        return Failure(Reason.ERROR, None, "the prompt failed without an error message")
    if report.interrupted:
        return Failure(Reason.INTERRUPTED, None, "interrupted", report.node_id, report.node_type)
    exc_type = report.exception_type or ""
    text = report.message or ""
    short = short_type_name(exc_type) or ""
    if short.endswith(OOM_TYPE_SUFFIXES) or "out of memory" in text.lower():
        reason = Reason.OOM
    elif short in set(transient_exceptions) or exc_type in set(transient_exceptions):
        reason = Reason.TRANSIENT
    else:
        reason = Reason.ERROR
    return Failure(reason, short or None, clip_message(text), report.node_id, report.node_type)


def is_retryable(failure: Failure, retry_node_errors: bool) -> bool:
    if failure.reason in (Reason.OOM, Reason.TRANSIENT):
        return True
    return failure.reason is Reason.ERROR and retry_node_errors


def backoff_delay(retry_number: int, base: float, cap: float, jitter: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base * 2**(n-1), capped, then +/- jitter fraction."""
    delay = min(cap, base * (2 ** max(0, retry_number - 1)))
    if jitter and delay:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    return max(0.0, delay)

