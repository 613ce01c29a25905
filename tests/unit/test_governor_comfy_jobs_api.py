"""The jobs API contract (``/api/jobs``) built from queue items and history, as frontend 1.58 parses it."""

from __future__ import annotations

import pytest
from harness.jobs_contract import job_violations, list_violations
from restoration_governor.governor import comfy_jobs_api as api

PID = "0b0c9a4e-62a2-4c53-9c0c-5a7a1c8a0e01"


def item(number, pid, create_time=1_700_000_000_000, workflow_id=None):
    extra = {"create_time": create_time, "client_id": "c1"}
    if workflow_id:
        extra["extra_pnginfo"] = {"workflow": {"id": workflow_id}}
    return (number, pid, {"1": {"class_type": "X", "inputs": {}}}, extra, ["1"])


def history_entry(number, pid, status_str="success", messages=(), outputs=None, create_time=1_700_000_000_000):
    return {"prompt": (number, pid, {}, {"create_time": create_time}, ["1"]),
            "outputs": outputs or {}, "status": {"status_str": status_str, "completed": status_str == "success",
                                                 "messages": [list(m) for m in messages]}}


SAVED = {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}
PREVIEW = {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]}


def test_canonical_uuid_rule_matches_cores():
    assert api.is_canonical_uuid(PID)
    assert not api.is_canonical_uuid(PID.upper())
    assert not api.is_canonical_uuid(PID.replace("-", ""))
    assert not api.is_canonical_uuid("my-prompt")
    assert not api.is_canonical_uuid(42)


def test_pending_jobs_keep_run_order_and_their_numbers_as_priority():
    running = [item(10, "r")]
    pending = [item(11, "first", create_time=3), item(12, "second", create_time=1)]
    answer = api.list_jobs(running, pending, {}, {"status": "in_progress,pending"})
    assert [(j["id"], j["status"], j["priority"]) for j in answer["jobs"]] == [
        ("r", "in_progress", 10), ("first", "pending", 11), ("second", "pending", 12)]
    assert answer["pagination"] == {"offset": 0, "limit": 3, "total": 3, "has_more": False}
    assert list_violations(answer) == []


def test_history_statuses_times_error_and_preview():
    error = {"prompt_id": "f", "node_id": "3", "node_type": "Sleep", "exception_message": "boom",
             "exception_type": "RuntimeError", "traceback": ["line"], "timestamp": 30}
    history = {
        "ok": history_entry(1, "ok", messages=[("execution_start", {"timestamp": 10}),
                                               ("execution_success", {"timestamp": 20})],
                            outputs={"4": PREVIEW, "5": SAVED}),
        "f": history_entry(2, "f", "error", messages=[("execution_start", {"timestamp": 25}),
                                                      ("execution_error", error)]),
        "c": history_entry(3, "c", "error", messages=[("execution_interrupted", {"timestamp": 40})]),
    }
    jobs = {j["id"]: j for j in api.list_jobs([], [], history, {})["jobs"]}
    assert jobs["ok"]["status"] == "completed"
    assert (jobs["ok"]["execution_start_time"], jobs["ok"]["execution_end_time"]) == (10, 20)
    assert jobs["ok"]["outputs_count"] == 2 and jobs["ok"]["previewable_outputs_count"] == 2
    assert jobs["ok"]["preview_output"] == {**SAVED["images"][0], "nodeId": "5", "mediaType": "images"}
    assert jobs["f"]["status"] == "failed" and jobs["f"]["execution_error"] == error
    assert jobs["c"]["status"] == "cancelled"
    assert "execution_error" not in jobs["c"]  # null keys are left out
    assert all(job_violations(j) == [] for j in jobs.values())


def test_filters_paging_and_sorting():
    history = {f"h{i}": history_entry(i, f"h{i}", create_time=i) for i in range(5)}
    newest_first = api.list_jobs([], [], history, {"status": "completed", "limit": "2", "offset": "1"})
    assert [j["id"] for j in newest_first["jobs"]] == ["h3", "h2"]
    assert newest_first["pagination"] == {"offset": 1, "limit": 2, "total": 5, "has_more": True}
    asc = api.list_jobs([], [], history, {"sort_by": "create_time", "sort_order": "asc"})
    assert [j["id"] for j in asc["jobs"]] == ["h0", "h1", "h2", "h3", "h4"]
    assert api.list_jobs([], [], history, {"status": "failed"})["jobs"] == []


@pytest.mark.parametrize("query", [{"status": "done"}, {"limit": "x"}, {"offset": "-1"},
                                   {"sort_by": "name"}, {"sort_order": "up"}])
def test_bad_queries_are_refused(query):
    with pytest.raises(api.JobsQueryError):
        api.list_jobs([], [], {}, query)


def test_detail_and_cancel_targets():
    running, pending = [item(1, "r")], [item(2, "p", workflow_id="wf")]
    history = {"h": history_entry(0, "h", outputs={"5": SAVED})}
    detail = api.find_job("p", running, pending, history)
    assert detail["status"] == "pending" and detail["workflow_id"] == "wf"
    assert detail["workflow"]["prompt"] == pending[0][2]
    finished = api.find_job("h", running, pending, history)
    assert finished["outputs"] == {"5": SAVED} and finished["execution_status"]["status_str"] == "success"
    assert job_violations(finished, detail=True) == []
    assert api.find_job("nope", running, pending, history) is None
    assert [api.cancel_target(x, running, pending, history) for x in ("r", "p", "h", "nope")] == [
        api.CANCEL_RUNNING, api.CANCEL_PENDING, api.CANCEL_FINISHED, api.CANCEL_UNKNOWN]


def test_contract_checker_catches_what_1_58_rejects():
    """The checker itself must fail on the shapes that blank the 1.58 panels."""
    bad = {"id": "x", "status": "failed", "create_time": None,
           "execution_error": {"node_id": 3, "node_type": None, "exception_message": "m",
                               "exception_type": "T", "traceback": "one string"}}
    problems = job_violations(bad)
    assert any("create_time" in p for p in problems)
    assert any("node_id" in p for p in problems) and any("node_type" in p for p in problems)
    assert any("traceback" in p for p in problems)
    assert list_violations({"jobs": [], "pagination": {"offset": 0, "limit": 0, "total": 0}}) == [
        "pagination.has_more must be a boolean"]
