"""Control verbs: cancel, priority, retry, pause / drain / resume (governor/control.py)."""

from __future__ import annotations

import pytest
from governor_fakes import FakeClock, failed, make_governor, run_next, submit
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.jobs import JobState, Priority, Reason


def test_cancel_pending_and_running(tmp_path):
    gov, host = make_governor(tmp_path)
    running, pending = submit(gov, "c1"), submit(gov, "c1")
    gov.dispatch(0)
    gov.cancel(pending.prompt_id, client_id="c1", admin=False)
    assert pending.state is JobState.CANCELLED and len(gov.scheduler) == 0
    with pytest.raises(GovernorError) as not_mine:
        gov.cancel(running.prompt_id, client_id="someone-else", admin=False)
    assert not_mine.value.status == 403
    gov.cancel(running.prompt_id, client_id="c1", admin=False)
    assert host.interrupts == [running.prompt_id]
    done = gov.complete(running.prompt_id, False, failed([["execution_interrupted", {}]]))
    assert running.state is JobState.CANCELLED and running.reason is Reason.CANCELLED and done.write_history
    assert running.errors == [] and pending.errors == []  # a cancel is not an error (no red "Last error")
    assert gov.job_view(running)["last_error"] is None
    with pytest.raises(GovernorError) as finished:
        gov.cancel(running.prompt_id)
    assert finished.value.status == 409


def test_drain_refuses_new_prompts_without_retry_after_and_keeps_dispatching(tmp_path):
    gov, _ = make_governor(tmp_path)
    queued = [submit(gov), submit(gov)]
    gov.set_dispatch_state("draining")
    with pytest.raises(GovernorError) as e:
        gov.reserve("c1")
    assert e.value.status == 503 and "Retry-After" not in e.value.headers
    assert [run_next(gov), run_next(gov)] == queued  # drain finishes the queue
    gov.set_dispatch_state("running")
    gov.reserve("c1")


def test_pause_holds_the_queue_and_stops_its_timeout_clock(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, queue_timeout=30, max_pending=1)
    held = submit(gov)
    clock.advance(10)
    gov.set_dispatch_state("paused")
    assert gov.dispatch(0).job is None
    with pytest.raises(GovernorError) as full:
        gov.reserve("c2")
    assert full.value.status == 429 and "Retry-After" not in full.value.headers  # waiting cannot help
    assert gov.job_view(held)["eta_s"] is None
    clock.advance(3600)  # an hour of maintenance
    gov.tick()
    assert held.state is JobState.PENDING and held.prompt_id not in host.history
    gov.set_dispatch_state("running")
    clock.advance(19)  # 10 s before the pause + 19 s after: 1 s left of its 30
    gov.tick()
    assert held.state is JobState.PENDING
    clock.advance(2)
    gov.tick()
    assert held.state is JobState.FAILED and held.reason is Reason.QUEUE_TIMEOUT


def test_priority_change_and_retry_api(tmp_path):
    gov, host = make_governor(tmp_path)
    gov.set_dispatch_state("paused")
    a, b = submit(gov, "c1"), submit(gov, "c2", Priority.LOW)
    with pytest.raises(GovernorError) as e:
        gov.set_priority(b.prompt_id, Priority.HIGH, client_id="c2", admin=False)
    assert e.value.status == 403
    gov.set_priority(b.prompt_id, Priority.HIGH, client_id=None, admin=True)
    assert [j.prompt_id for j in gov.scheduler] == [b.prompt_id, a.prompt_id]
    gov.cancel(a.prompt_id, client_id="c1", admin=False)
    host.history[a.prompt_id] = {"stale": True}
    again = gov.retry(a.prompt_id, client_id="c1", admin=False)
    assert again.state is JobState.PENDING and again.attempts == 0 and a.prompt_id not in host.history
    assert [j.prompt_id for j in gov.scheduler] == [b.prompt_id, a.prompt_id]
