"""Why an attempt failed, whether it is worth another try, and how long to wait first.

ComfyUI hands the worker's ``task_done`` an ExecutionStatus whose messages carry the
``execution_error`` payload (``exception_type``, ``exception_message``) or an
``execution_interrupted`` message. That is all there is to classify from:

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


@dataclass(frozen=True)
class Failure:
    reason: Reason
    exception_type: str | None
    message: str
    node_id: str | None = None
    node_type: str | None = None

    def record(self, attempt: int, at: float) -> dict[str, Any]:
        return {
            "attempt": attempt, "at": at, "reason": self.reason.value, "exception_type": self.exception_type,
            "message": self.message, "node_id": self.node_id, "node_type": self.node_type,
        }


def classify(messages: list[Any] | None, transient_exceptions: list[str] | tuple[str, ...]) -> Failure:
    """Classify a failed execution from its ComfyUI status messages."""
    error_data: dict[str, Any] | None = None
    interrupted: dict[str, Any] | None = None
    for message in messages or []:
        if not isinstance(message, (list, tuple)) or len(message) != 2:
            continue
        kind, data = message
        if kind == "execution_error" and isinstance(data, dict):
            error_data = data
        elif kind == "execution_interrupted" and isinstance(data, dict):
            interrupted = data
    if interrupted is not None and error_data is None:
        return Failure(Reason.INTERRUPTED, None, "interrupted", _s(interrupted.get("node_id")),
                       _s(interrupted.get("node_type")))
    if error_data is None:
        return Failure(Reason.ERROR, None, "the prompt failed without an error message")
    exc_type = _s(error_data.get("exception_type")) or ""
    text = _s(error_data.get("exception_message")) or ""
    short = exc_type.rsplit(".", 1)[-1]
    if short.endswith(OOM_TYPE_SUFFIXES) or "out of memory" in text.lower():
        reason = Reason.OOM
    elif short in set(transient_exceptions) or exc_type in set(transient_exceptions):
        reason = Reason.TRANSIENT
    else:
        reason = Reason.ERROR
    return Failure(reason, exc_type or None, text.strip()[:2000], _s(error_data.get("node_id")),
                   _s(error_data.get("node_type")))


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


def _s(value: Any) -> str | None:
    return None if value is None else str(value)
