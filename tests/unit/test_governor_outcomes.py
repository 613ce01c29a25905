"""Outcomes of attempts: retry with backoff, final failures, interrupts (governor/outcomes.py)."""

from __future__ import annotations

from governor_fakes import FakeClock, failed, make_governor, oom_messages, submit
from restoration_governor.governor.jobs import JobState, Reason


def test_oom_is_retried_at_the_head_after_backoff_then_succeeds(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, retry_backoff=2.0, retry_jitter=0)
    job = submit(gov, "c1")
    other = submit(gov, "c2")
    d = gov.dispatch(0)
    assert d.job is job
    done = gov.complete(job.prompt_id, False, failed(oom_messages()))
    assert done.write_history is False and done.free_memory is True
    assert job.state is JobState.PENDING and job.attempts == 1 and job.errors[0]["reason"] == "oom"
    assert any(e["event"] == "retry" for e in host.of("governor.job"))
    # In backoff the next job may run meanwhile; after it the retry is first in line.
    assert gov.dispatch(0).job is other
    gov.complete(other.prompt_id, True, [])
    assert gov.dispatch(0).job is None
    clock.advance(2.01)
    assert gov.dispatch(0).job is job
    done = gov.complete(job.prompt_id, True, [])
    assert done.write_history and done.governor_info["attempts"] == 2
    assert job.state is JobState.SUCCESS and len(job.errors) == 1


def test_retries_stop_after_the_configured_attempts_and_keep_every_error(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock, retry_attempts=2, retry_backoff=0)
    job = submit(gov)
    for attempt in (1, 2, 3):
        assert gov.dispatch(0).job is job
        done = gov.complete(job.prompt_id, False, failed(oom_messages()))
        assert done.write_history is (attempt == 3)
    assert job.state is JobState.FAILED and job.reason is Reason.OOM
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]


def test_node_errors_and_interrupts_are_not_retried(tmp_path):
    gov, _ = make_governor(tmp_path, retry_backoff=0)
    err = submit(gov)
    gov.dispatch(0)
    gov.complete(err.prompt_id, False, failed([["execution_error", {"exception_type": "ValueError",
                                                            "exception_message": "bad value"}]]))
    assert err.state is JobState.FAILED and err.reason is Reason.ERROR and err.attempts == 1
    stopped = submit(gov)
    gov.dispatch(0)
    gov.complete(stopped.prompt_id, False, failed([["execution_interrupted", {"node_id": "1"}]]))
    assert stopped.state is JobState.CANCELLED and stopped.reason is Reason.INTERRUPTED


def test_transient_errors_and_opted_in_node_errors_are_retried(tmp_path):
    gov, _ = make_governor(tmp_path, retry_backoff=0)
    job = submit(gov)
    gov.dispatch(0)
    gov.complete(job.prompt_id, False, failed([["execution_error", {"exception_type": "ConnectionError",
                                                            "exception_message": "reset"}]]))
    assert job.state is JobState.PENDING
    gov.update_config({"retry_node_errors": True})
    gov.dispatch(0)
    gov.complete(job.prompt_id, False, failed([["execution_error", {"exception_type": "ValueError",
                                                            "exception_message": "x"}]]))
    assert job.state is JobState.PENDING and job.attempts == 2
