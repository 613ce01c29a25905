"""Frontend 1.58.1's schema for ``/api/jobs`` answers, written down as checks.

The frontend parses the whole list with one schema: a single malformed job (a ``create_time`` that is
not a number, an ``execution_error`` whose ``node_id`` is an int or whose ``traceback`` is a string)
makes the Job Queue and Job History panels show nothing for every user. These are the rules read from
``comfyui-frontend-package==1.58.1`` (``assets/api-*.js``: the job, job-detail and list schemas);
each function returns the list of violations, empty when the answer is valid.
"""

from __future__ import annotations

from typing import Any

STATUSES = {"pending", "in_progress", "completed", "failed", "cancelled"}
ERROR_STRINGS = ("node_id", "node_type", "exception_message", "exception_type")
OUTPUT_TYPES = {"input", "output", "temp"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def execution_error_violations(error: Any, where: str = "execution_error") -> list[str]:
    if error is None:
        return []
    if not isinstance(error, dict):
        return [f"{where} is {type(error).__name__}, not an object"]
    bad = [f"{where}.{key} must be a string, got {error.get(key)!r}"
           for key in ERROR_STRINGS if not isinstance(error.get(key), str)]
    trace = error.get("traceback")
    if not isinstance(trace, list) or not all(isinstance(line, str) for line in trace):
        bad.append(f"{where}.traceback must be a list of strings, got {trace!r}")
    if "prompt_id" in error and not isinstance(error["prompt_id"], str):
        bad.append(f"{where}.prompt_id must be a string")
    if "timestamp" in error and not _is_number(error["timestamp"]):
        bad.append(f"{where}.timestamp must be a number")
    executed = error.get("executed")
    if executed is not None and not (isinstance(executed, list) and all(isinstance(x, str) for x in executed)):
        bad.append(f"{where}.executed must be a list of strings")
    return bad


def job_violations(job: Any, *, detail: bool = False) -> list[str]:
    if not isinstance(job, dict):
        return [f"job is {type(job).__name__}, not an object"]
    where = f"job {job.get('id')!r}"
    bad = []
    if not isinstance(job.get("id"), str):
        bad.append(f"{where}: id must be a string")
    if job.get("status") not in STATUSES:
        bad.append(f"{where}: status {job.get('status')!r} is not one of {sorted(STATUSES)}")
    if not _is_number(job.get("create_time")):
        bad.append(f"{where}: create_time must be a number, got {job.get('create_time')!r}")
    for key in ("execution_start_time", "execution_end_time", "priority"):
        if job.get(key) is not None and not _is_number(job[key]):
            bad.append(f"{where}: {key} must be a number")
    for key in ("outputs_count", "previewable_outputs_count"):
        if job.get(key) is not None and not _is_number(job[key]):
            bad.append(f"{where}: {key} must be a number")
    if job.get("workflow_id") is not None and not isinstance(job["workflow_id"], str):
        bad.append(f"{where}: workflow_id must be a string")
    preview = job.get("preview_output")
    if preview is not None:
        if not isinstance(preview, dict) or not isinstance(preview.get("nodeId"), str) \
                or not isinstance(preview.get("mediaType"), str):
            bad.append(f"{where}: preview_output needs string nodeId and mediaType")
        elif preview.get("type") is not None and preview["type"] not in OUTPUT_TYPES:
            bad.append(f"{where}: preview_output.type must be one of {sorted(OUTPUT_TYPES)}")
    bad += execution_error_violations(job.get("execution_error"), f"{where}: execution_error")
    if detail:
        if job.get("outputs") is not None and not isinstance(job["outputs"], dict):
            bad.append(f"{where}: outputs must be an object")
        for key in ("workflow", "execution_status"):
            if job.get(key) is not None and not isinstance(job[key], dict):
                bad.append(f"{where}: {key} must be an object")
    return bad


def list_violations(answer: Any) -> list[str]:
    if not isinstance(answer, dict) or not isinstance(answer.get("jobs"), list):
        return ["the answer must be an object with a jobs list"]
    bad = [v for job in answer["jobs"] for v in job_violations(job)]
    page = answer.get("pagination")
    if not isinstance(page, dict):
        return [*bad, "pagination is missing"]
    bad += [f"pagination.{key} must be a number" for key in ("offset", "limit", "total") if not _is_number(page.get(key))]
    if not isinstance(page.get("has_more"), bool):
        bad.append("pagination.has_more must be a boolean")
    return bad
