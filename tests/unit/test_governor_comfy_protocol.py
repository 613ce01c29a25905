"""ComfyUI's wire shapes, read and written by the adapter's protocol module (governor/comfy_protocol.py)."""

from __future__ import annotations

from harness.jobs_contract import execution_error_violations, job_violations
from restoration_governor.governor.comfy_jobs_api import job_from_history
from restoration_governor.governor.comfy_protocol import (
    extra_data_of,
    history_entry,
    is_error_event,
    is_prompt_end_event,
    report_from_messages,
    unstarted_failure,
)
from restoration_governor.governor.failures import error_record
from restoration_governor.governor.jobs import Job, Priority, Reason


def test_status_messages_become_an_error_report_and_an_error_wins_over_an_interrupt():
    error = {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory",
             "node_id": 7, "node_type": "KSampler"}
    report = report_from_messages([["execution_start", {}], ["execution_interrupted", {"node_id": "3"}],
                                   ["execution_error", error], ["malformed"]])
    assert (report.exception_type, report.message, report.node_id, report.node_type, report.interrupted) == \
        ("torch.OutOfMemoryError", "CUDA out of memory", "7", "KSampler", False)
    stopped = report_from_messages([["execution_interrupted", {"node_id": "3", "node_type": "Sleep"}]])
    assert stopped.interrupted and stopped.node_id == "3" and stopped.node_type == "Sleep"
    assert report_from_messages([["execution_start", {}]]) is None and report_from_messages(None) is None


def test_end_of_prompt_events_are_recognised_only_in_their_exact_shape():
    assert is_prompt_end_event("executing", {"node": None, "prompt_id": "p"})
    assert not is_prompt_end_event("executing", {"node": "4", "prompt_id": "p"})
    assert not is_prompt_end_event("executed", {"node": None, "prompt_id": "p"})
    assert is_error_event("execution_error", {"prompt_id": "p"}) and not is_error_event("execution_error", {})


def test_a_job_that_never_ran_fails_as_comfyui_shows_a_failure():
    job = Job(prompt_id="p1", seq=1, prompt={}, extra_data={}, outputs=[], client_id="c", fair_key="c",
              priority=Priority.NORMAL, created_at=0, queued_at=0, max_attempts=3)
    error = error_record(0, 12.5, Reason.QUEUE_TIMEOUT, "Queue timeout: waited 301 s (limit 300 s)",
                         exception_type="governor.queue_timeout")
    status, events = unstarted_failure(job, error)
    assert status["status_str"] == "error" and status["completed"] is False
    kind, payload = status["messages"][0]
    assert kind == "execution_error" and payload["prompt_id"] == "p1" and payload["timestamp"] == 12500
    assert payload["exception_type"] == "governor.queue_timeout" and payload["exception_message"].startswith("Queue")
    assert events == [("execution_error", payload), ("executing", {"node": None, "prompt_id": "p1"})]


def test_an_unstarted_failure_and_its_history_entry_pass_frontend_1_58s_schema():
    """Queue timeout, memory-gate timeout and invalid-after-restart all go through these two functions."""
    job = Job(prompt_id="p2", seq=2, prompt={}, extra_data={"client_id": "c"}, outputs=[], client_id="c",
              fair_key="c", priority=Priority.NORMAL, created_at=1_700_000_000.25, queued_at=0, max_attempts=3)
    for reason in (Reason.QUEUE_TIMEOUT, Reason.MEMORY_GATE_TIMEOUT, Reason.INVALID_ON_RESTORE):
        status, _ = unstarted_failure(job, error_record(0, 12.5, reason, "m", exception_type=f"governor.{reason.value}"))
        payload = status["messages"][0][1]
        assert execution_error_violations(payload) == []
        assert (payload["node_id"], payload["node_type"]) == ("", "restoration-governor")
        entry = history_entry(job, status, {"state": "failed"})
        assert entry["prompt"][3]["create_time"] == 1_700_000_000_250  # from an older store: admission time
        listed = job_from_history("p2", entry)
        assert listed["status"] == "failed" and job_violations(listed) == []


def test_create_time_from_the_core_is_kept_and_never_written_into_the_job():
    job = Job(prompt_id="p3", seq=3, prompt={}, extra_data={"create_time": 5}, outputs=[], client_id=None,
              fair_key="ip:x", priority=Priority.LOW, created_at=9.0, queued_at=0, max_attempts=1)
    assert extra_data_of(job)["create_time"] == 5
    job.extra_data = {"create_time": "yesterday"}
    assert extra_data_of(job)["create_time"] == 9000 and job.extra_data == {"create_time": "yesterday"}
