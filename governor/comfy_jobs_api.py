"""ComfyUI's jobs API (``/api/jobs``) built from queue items and history entries.

Core 0.4x serves ``GET /api/jobs``, ``GET /api/jobs/{id}``, ``POST /api/jobs/{id}/cancel`` and
``POST /api/jobs/cancel``; frontend 1.58 reads its Job Queue and Job History panels from them and
rejects a whole list when one entry is malformed. On cores without these routes (0.3.x) the adapter
serves them from the governed queue with this module, so the stock panels show the governed queue in
run order. It is part of the adapter's wire protocol, but imports nothing from ComfyUI so that the
contract is unit-testable.

The contract (facts from core 0.38+ and frontend 1.58.1's schema; see
``shared/reference/upstream-2026.md``):

* a job is ``{id, status, priority, create_time, ...}``; ``status`` is one of :data:`JOB_STATUSES`;
  ``priority`` is the queue number (the governor numbers pending prompts in run order, so a lower
  number runs earlier); ``create_time`` is ``extra_data.create_time`` in ms. Keys whose value is
  ``None`` are left out.
* finished jobs add ``execution_start_time`` / ``execution_end_time`` (ms, from the status messages),
  ``execution_error`` (the stored ``execution_error`` message), ``outputs_count``,
  ``previewable_outputs_count``, ``preview_output`` (first saved image, else first preview) and
  ``workflow_id`` (``extra_pnginfo.workflow.id``).
* a history entry with ``status_str == "error"`` is ``failed``, or ``cancelled`` when its messages
  hold ``execution_interrupted``; anything else in history is ``completed``.
* a list answer is ``{"jobs": [...], "pagination": {offset, limit, total, has_more}}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
JOB_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
FINISHED_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})
SORT_KEYS = ("create_time", "execution_duration")
PREVIEWABLE_MEDIA = frozenset({"images", "video", "audio", "3d", "text"})

# What a cancel found (the answer of :func:`cancel_target`).
CANCEL_RUNNING, CANCEL_PENDING, CANCEL_FINISHED, CANCEL_UNKNOWN = "running", "pending", "finished", "unknown"


class JobsQueryError(ValueError):
    """A query parameter of ``GET /api/jobs`` is not one the contract allows (answered with 400)."""


def is_canonical_uuid(value: object) -> bool:
    """True for a UUID in canonical lowercase hyphenated form (core's rule for client-chosen job ids)."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, AttributeError):
        return False


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _metadata(extra_data: Mapping[str, Any] | None) -> tuple[Any, Any]:
    extra = extra_data if isinstance(extra_data, Mapping) else {}
    pnginfo = extra.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
    workflow_id = workflow.get("id") if isinstance(workflow, Mapping) else None
    return extra.get("create_time"), (str(workflow_id) if workflow_id is not None else None)


def job_from_queue_item(item: Sequence[Any], status: str, *, detail: bool = False) -> dict[str, Any]:
    """A pending or running job from a queue item ``(number, prompt_id, prompt, extra_data, outputs[, ...])``."""
    number, prompt_id, prompt, extra_data = item[0], item[1], item[2], item[3]
    create_time, workflow_id = _metadata(extra_data)
    job = _without_none({
        "id": prompt_id, "status": status, "priority": number, "create_time": create_time,
        "outputs_count": 0, "previewable_outputs_count": 0, "workflow_id": workflow_id,
    })
    if detail:
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _messages(status: Mapping[str, Any] | None) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for entry in (status or {}).get("messages") or ():
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[1], Mapping):
            yield entry[0], entry[1]


def _output_items(outputs: Mapping[str, Any]) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    """``(node_id, media_type, item)`` for every file-like output item, in node order."""
    for node_id, node_outputs in (outputs or {}).items():
        if not isinstance(node_outputs, Mapping):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, Mapping):
                    yield str(node_id), media_type, item


def _previewable(media_type: str, item: Mapping[str, Any]) -> bool:
    fmt = str(item.get("format") or "")
    return media_type in PREVIEWABLE_MEDIA or fmt.startswith(("video/", "audio/"))


def outputs_summary(outputs: Mapping[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
    """``(outputs_count, previewable_outputs_count, preview_output)`` of a history entry's outputs.

    The preview is the first saved (``type == "output"``) previewable item, else the first previewable
    one, with ``nodeId`` and ``mediaType`` added as frontend 1.58 requires.
    """
    count = previewable = 0
    saved = first = None
    for node_id, media_type, item in _output_items(outputs):
        count += 1
        if not _previewable(media_type, item):
            continue
        previewable += 1
        enriched = {**item, "nodeId": node_id, "mediaType": item.get("mediaType", media_type)}
        if saved is None and item.get("type") == "output":
            saved = enriched
        if first is None:
            first = enriched
    return count, previewable, saved or first


def job_from_history(prompt_id: str, entry: Mapping[str, Any], *, detail: bool = False) -> dict[str, Any]:
    """A finished job from a history entry ``{prompt: (number, id, prompt, extra_data, outputs), outputs, status}``."""
    prompt_tuple = entry.get("prompt") or (None, prompt_id, {}, {}, [])
    number, prompt, extra_data = prompt_tuple[0], prompt_tuple[2], prompt_tuple[3]
    create_time, workflow_id = _metadata(extra_data)
    status_info = entry.get("status") or {}
    started = ended = error = None
    interrupted = False
    for event, data in _messages(status_info):
        if event == "execution_start":
            started = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            ended = data.get("timestamp")
            if event == "execution_error":
                error = dict(data)
            elif event == "execution_interrupted":
                interrupted = True
    if status_info.get("status_str") == "error":
        status = CANCELLED if interrupted else FAILED
    else:
        status = COMPLETED
    outputs = entry.get("outputs") or {}
    count, previewable, preview = outputs_summary(outputs)
    job = _without_none({
        "id": prompt_id, "status": status, "priority": number, "create_time": create_time,
        "execution_start_time": started, "execution_end_time": ended, "execution_error": error,
        "outputs_count": count, "previewable_outputs_count": previewable, "preview_output": preview,
        "workflow_id": workflow_id,
    })
    if detail:
        job["outputs"] = dict(outputs)
        job["execution_status"] = dict(status_info)
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _int_param(query: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JobsQueryError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise JobsQueryError(f"{name} must not be negative, got {value}")
    return value


def _duration(job: Mapping[str, Any]) -> float:
    start, end = job.get("execution_start_time"), job.get("execution_end_time")
    return float(end - start) if start and end else 0.0


def list_jobs(running: Sequence[Sequence[Any]], pending: Sequence[Sequence[Any]],
              history: Mapping[str, Mapping[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """The answer of ``GET /api/jobs?status=a,b&limit=N&offset=K&sort_by=…&sort_order=asc|desc``.

    ``pending`` must be in run order. Without ``sort_by`` the order is running, then pending in run
    order, then history newest first — what a queue panel shows; with it, jobs are sorted by that key.
    Raises :class:`JobsQueryError` for an unknown status, sort key or order, or a negative number.
    """
    wanted = [s for s in (query.get("status") or "").split(",") if s] or list(JOB_STATUSES)
    unknown = [s for s in wanted if s not in JOB_STATUSES]
    if unknown:
        raise JobsQueryError(f"unknown status {', '.join(unknown)}; use {', '.join(JOB_STATUSES)}")
    sort_by, order = query.get("sort_by"), query.get("sort_order", "desc")
    if sort_by is not None and sort_by not in SORT_KEYS:
        raise JobsQueryError(f"sort_by must be one of {', '.join(SORT_KEYS)}")
    if order not in ("asc", "desc"):
        raise JobsQueryError("sort_order must be asc or desc")
    limit, offset = _int_param(query, "limit", None), _int_param(query, "offset", 0) or 0

    jobs: list[dict[str, Any]] = []
    if IN_PROGRESS in wanted:
        jobs += [job_from_queue_item(item, IN_PROGRESS) for item in running]
    if PENDING in wanted:
        jobs += [job_from_queue_item(item, PENDING) for item in pending]
    if FINISHED_STATUSES.intersection(wanted):
        finished = [job_from_history(pid, entry) for pid, entry in reversed(list(history.items()))]
        jobs += [job for job in finished if job["status"] in wanted]
    if sort_by is not None:
        key = _duration if sort_by == "execution_duration" else (lambda job: job.get("create_time") or 0)
        jobs.sort(key=key, reverse=order == "desc")
    total = len(jobs)
    page = jobs[offset:] if limit is None else jobs[offset:offset + limit]
    return {"jobs": page, "pagination": {
        "offset": offset, "limit": limit if limit is not None else total, "total": total,
        "has_more": offset + len(page) < total,
    }}


def find_job(prompt_id: str, running: Sequence[Sequence[Any]], pending: Sequence[Sequence[Any]],
             history: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The answer of ``GET /api/jobs/{id}`` (with outputs and workflow), or None when unknown (404)."""
    if prompt_id in history:
        return job_from_history(prompt_id, history[prompt_id], detail=True)
    for items, status in ((running, IN_PROGRESS), (pending, PENDING)):
        for item in items:
            if item[1] == prompt_id:
                return job_from_queue_item(item, status, detail=True)
    return None


def cancel_target(prompt_id: str, running: Sequence[Sequence[Any]], pending: Sequence[Sequence[Any]],
                  history: Mapping[str, Any]) -> str:
    """Where a job to cancel is: :data:`CANCEL_RUNNING`, ``PENDING``, ``FINISHED`` or ``UNKNOWN``."""
    if any(item[1] == prompt_id for item in running):
        return CANCEL_RUNNING
    if any(item[1] == prompt_id for item in pending):
        return CANCEL_PENDING
    return CANCEL_FINISHED if prompt_id in history else CANCEL_UNKNOWN
