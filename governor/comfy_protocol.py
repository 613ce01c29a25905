"""ComfyUI's wire protocol as the governor meets it: event names, payloads and history shapes.

Owned by the adapter (``comfy_adapter``), which is the only governor module that imports it: the
rest of the governor speaks in its own terms (an ``ErrorReport``, a job that ended unstarted, an
attempt that will be retried). Plain Python, no ComfyUI import, so the shapes are unit-testable.

* A failed attempt's status carries ``["execution_error", {exception_type, exception_message,
  node_id, node_type, ...}]`` or ``["execution_interrupted", {node_id, node_type, ...}]``.
* A client waiting on a prompt stops at ``execution_error`` (or success) followed by
  ``executing {"node": null, "prompt_id": ...}``.
* A history entry's ``status`` is ``{status_str, completed, messages}``.
* Frontend 1.58 parses ``/api/jobs`` strictly: an ``execution_error`` needs strings for ``node_id``,
  ``node_type``, ``exception_message`` and ``exception_type`` and a list of strings for ``traceback``,
  and every job a numeric ``extra_data.create_time`` (ms). Everything written here has those shapes.
"""

from __future__ import annotations

from typing import Any

from .failures import ErrorReport, short_type_name
from .jobs import Job

EXECUTION_ERROR = "execution_error"
EXECUTION_INTERRUPTED = "execution_interrupted"
EXECUTING = "executing"
# ``node_type`` of a failure that no node raised (queue timeout, memory gate, invalid after restart).
GOVERNOR_NODE_TYPE = "restoration-governor"


def report_from_messages(messages: list[Any] | None) -> ErrorReport | None:
    """What a failed attempt's status messages say (the last error wins over an interrupt); None if nothing."""
    error_data: dict[str, Any] | None = None
    interrupted: dict[str, Any] | None = None
    for message in messages or []:
        if not isinstance(message, (list, tuple)) or len(message) != 2:
            continue
        kind, data = message
        if kind == EXECUTION_ERROR and isinstance(data, dict):
            error_data = data
        elif kind == EXECUTION_INTERRUPTED and isinstance(data, dict):
            interrupted = data
    if error_data is not None:
        return report_from_error_event(error_data)
    if interrupted is not None:
        return ErrorReport(node_id=_s(interrupted.get("node_id")), node_type=_s(interrupted.get("node_type")),
                           interrupted=True)
    return None


def report_from_error_event(data: dict[str, Any]) -> ErrorReport:
    """The ``execution_error`` payload as an ``ErrorReport``."""
    return ErrorReport(exception_type=_s(data.get("exception_type")) or None,
                       message=_s(data.get("exception_message")) or "", node_id=_s(data.get("node_id")),
                       node_type=_s(data.get("node_type")))


def shorten_exception_type(data: dict[str, Any]) -> None:
    """Replace an ``execution_error`` payload's ``exception_type`` by its short name, in place.

    ComfyUI names a custom node's exception by its module path (``…/custom_nodes/pack.module.Error``);
    the payload it sends is the dict it also keeps for the history entry, so both show ``Error``.
    """
    if isinstance(data.get("exception_type"), str):
        data["exception_type"] = short_type_name(data["exception_type"])


def is_error_event(event: str, data: Any) -> bool:
    return event == EXECUTION_ERROR and isinstance(data, dict) and isinstance(data.get("prompt_id"), str)


def is_prompt_end_event(event: str, data: Any) -> bool:
    """``executing {node: null}``: the signal plain clients take as 'this prompt is over'."""
    return (event == EXECUTING and isinstance(data, dict) and data.get("node") is None
            and isinstance(data.get("prompt_id"), str))


def unstarted_failure(job: Job, error: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A job that failed without running, as ComfyUI shows a failure: (history ``status``, events for its client).

    ``error`` is the governor's error record; its ``exception_type`` (``governor.queue_timeout`` …)
    and ``message`` become the ``execution_error`` payload.
    """
    payload = {"prompt_id": job.prompt_id, "node_id": "", "node_type": GOVERNOR_NODE_TYPE, "executed": [],
               "exception_message": str(error.get("message") or ""),
               "exception_type": str(error.get("exception_type") or "governor.error"), "traceback": [],
               "current_inputs": {}, "current_outputs": [], "timestamp": int(error["at"] * 1000)}
    status = {"status_str": "error", "completed": False, "messages": [[EXECUTION_ERROR, payload]]}
    events = [(EXECUTION_ERROR, payload), (EXECUTING, {"node": None, "prompt_id": job.prompt_id})]
    return status, events


def history_entry(job: Job, status: dict[str, Any], governor_info: dict[str, Any]) -> dict[str, Any]:
    """A ``/history`` entry for a job that never ran (same keys as the worker's entries)."""
    return {
        "prompt": (job.dispatch_number or job.number, job.prompt_id, job.prompt or {}, extra_data_of(job),
                   job.outputs),
        "outputs": {}, "status": status, "meta": {}, "governor": governor_info,
    }


def extra_data_of(job: Job) -> dict[str, Any]:
    """A copy of the job's ``extra_data`` with ``create_time`` (ms since the epoch) always set.

    Core 0.4x stamps ``create_time`` in ``POST /prompt``; older cores, other packs' ``put`` and jobs
    recovered from an older store lack it, so the admission time (``Job.created_at``) fills it in.
    """
    extra = dict(job.extra_data)
    if not isinstance(extra.get("create_time"), (int, float)) or isinstance(extra.get("create_time"), bool):
        extra["create_time"] = int(job.created_at * 1000)
    return extra


def _s(value: Any) -> str | None:
    return None if value is None else str(value)
