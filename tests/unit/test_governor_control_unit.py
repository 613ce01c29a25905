"""Control verbs: cancel, priority, retry, pause / drain / resume (governor/control.py)."""

from __future__ import annotations

import pytest
from governor_fakes import failed, make_governor, submit
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
    with pytest.raises(GovernorError) as finished:
        gov.cancel(running.prompt_id)
    assert finished.value.status == 409


def test_drain_rejects_new_prompts_and_resume_restores(tmp_path):
    gov, _ = make_governor(tmp_path)
    queued = submit(gov)
    gov.set_dispatch_state("draining")
    with pytest.raises(GovernorError) as e:
        gov.reserve("c1")
    assert e.value.status == 503
    assert gov.dispatch(0).job is None
    gov.set_dispatch_state("running")
    assert gov.dispatch(0).job is queued


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
