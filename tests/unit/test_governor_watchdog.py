"""The watchdog tick: queue and execution timeouts, stuck jobs (governor/watchdog.py)."""

from __future__ import annotations

from governor_fakes import FakeClock, failed, make_governor, submit
from restoration_governor.governor.jobs import JobState, Reason


def test_queue_timeout_fails_the_job_in_history_and_tells_the_client(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, queue_timeout=30)
    blocker = submit(gov, "c0")
    assert gov.dispatch(0).job is blocker  # holds the only slot: the next ones wait
    short = submit(gov, "c1", timeout=5)
    long = submit(gov, "c1", timeout=500)  # may only shorten: capped at 30
    assert long.queue_timeout == 30
    clock.advance(6)
    gov.tick()
    assert short.state is JobState.FAILED and short.reason is Reason.QUEUE_TIMEOUT
    assert host.history[short.prompt_id]["status"]["status_str"] == "error"
    assert [e for e in host.of("execution_error") if e["prompt_id"] == short.prompt_id]
    assert {"node": None, "prompt_id": short.prompt_id} in host.of("executing")
    clock.advance(25)
    gov.tick()
    assert long.state is JobState.FAILED
    gov.complete(blocker.prompt_id, True, None)
    assert gov.metrics_snapshot()["counts"] == {}


def test_exec_timeout_interrupts_then_marks_stuck(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, exec_timeout=10, exec_timeout_grace=5)
    job = submit(gov)
    gov.dispatch(0)
    clock.advance(11)
    gov.tick()
    assert host.interrupts == [job.prompt_id]
    clock.advance(6)
    gov.tick()
    assert job.state is JobState.STUCK
    gov.complete(job.prompt_id, False, failed([["execution_interrupted", {}]]))
    assert job.state is JobState.FAILED and job.reason is Reason.EXEC_TIMEOUT and job.attempts == 1
