"""The governor core with a fake ComfyUI host, clock and memory probe."""

from __future__ import annotations

import sqlite3

import pytest
from governor_fakes import FakeClock, FakeProbe, crash, make_governor, oom_messages, run_next, submit
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.jobs import JobState, Priority, Reason


def test_admission_is_durable_and_never_stores_sensitive_keys(tmp_path):
    gov, _ = make_governor(tmp_path)
    job = submit(gov, "c1")
    raw = sqlite3.connect(tmp_path / "queue-a.sqlite3").execute("SELECT * FROM jobs").fetchall()
    assert len(raw) == 1 and job.prompt_id in str(raw)
    assert "secret" not in str(raw) and "api_key_comfy_org" not in str(raw)
    assert job.sensitive == {"api_key_comfy_org": "secret"}  # kept in memory for the run


def test_caps_reject_with_retry_after(tmp_path):
    gov, _ = make_governor(tmp_path, max_pending=3, max_pending_per_client=2)
    submit(gov, "a")
    submit(gov, "a")
    with pytest.raises(GovernorError) as per_client:
        gov.reserve("a")
    assert per_client.value.status == 429
    assert per_client.value.extra_info["cap"] == "max_pending_per_client"
    assert int(per_client.value.headers["Retry-After"]) >= 1
    submit(gov, "b")
    with pytest.raises(GovernorError) as total:
        gov.reserve("c")
    assert total.value.extra_info["cap"] == "max_pending"
    run_next(gov)  # a slot frees up
    gov.reserve("c")


def test_reservations_count_against_caps_so_concurrent_admissions_cannot_overshoot(tmp_path):
    gov, _ = make_governor(tmp_path, max_pending=2)
    gov.reserve("x")
    gov.reserve("y")  # two requests still validating
    with pytest.raises(GovernorError):
        gov.reserve("z")
    gov.unreserve("x")
    gov.reserve("z")


def test_dispatch_order_priority_then_fair_share(tmp_path):
    gov, _ = make_governor(tmp_path)
    gov.set_dispatch_state("paused")
    ids = {}
    for name, client, prio in [("a1", "A", Priority.NORMAL), ("a2", "A", Priority.NORMAL), ("b1", "B", Priority.NORMAL),
                               ("l1", "L", Priority.LOW), ("h1", "H", Priority.HIGH)]:
        ids[submit(gov, client, prio).prompt_id] = name
    assert gov.dispatch(0).job is None  # paused: holds everything
    gov.set_dispatch_state("running")
    ran = []
    while (job := run_next(gov)) is not None:
        ran.append(ids[job.prompt_id])
    assert ran == ["h1", "a1", "b1", "a2", "l1"]


def test_oom_is_retried_at_the_head_after_backoff_then_succeeds(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, retry_backoff=2.0, retry_jitter=0)
    job = submit(gov, "c1")
    other = submit(gov, "c2")
    d = gov.dispatch(0)
    assert d.job is job
    done = gov.complete(job.prompt_id, False, oom_messages())
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
        done = gov.complete(job.prompt_id, False, oom_messages())
        assert done.write_history is (attempt == 3)
    assert job.state is JobState.FAILED and job.reason is Reason.OOM
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]


def test_node_errors_and_interrupts_are_not_retried(tmp_path):
    gov, _ = make_governor(tmp_path, retry_backoff=0)
    err = submit(gov)
    gov.dispatch(0)
    gov.complete(err.prompt_id, False, [["execution_error", {"exception_type": "ValueError",
                                                            "exception_message": "bad value"}]])
    assert err.state is JobState.FAILED and err.reason is Reason.ERROR and err.attempts == 1
    stopped = submit(gov)
    gov.dispatch(0)
    gov.complete(stopped.prompt_id, False, [["execution_interrupted", {"node_id": "1"}]])
    assert stopped.state is JobState.CANCELLED and stopped.reason is Reason.INTERRUPTED


def test_transient_errors_and_opted_in_node_errors_are_retried(tmp_path):
    gov, _ = make_governor(tmp_path, retry_backoff=0)
    job = submit(gov)
    gov.dispatch(0)
    gov.complete(job.prompt_id, False, [["execution_error", {"exception_type": "ConnectionError",
                                                            "exception_message": "reset"}]])
    assert job.state is JobState.PENDING
    gov.update_config({"retry_node_errors": True})
    gov.dispatch(0)
    gov.complete(job.prompt_id, False, [["execution_error", {"exception_type": "ValueError",
                                                            "exception_message": "x"}]])
    assert job.state is JobState.PENDING and job.attempts == 2


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
    done = gov.complete(running.prompt_id, False, [["execution_interrupted", {}]])
    assert running.state is JobState.CANCELLED and running.reason is Reason.CANCELLED and done.write_history
    with pytest.raises(GovernorError) as finished:
        gov.cancel(running.prompt_id)
    assert finished.value.status == 409


def test_queue_timeout_fails_the_job_in_history_and_tells_the_client(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock, queue_timeout=30)
    gov.set_dispatch_state("paused")
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
    assert long.state is JobState.FAILED and gov.metrics_snapshot()["counts"] == {}


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
    gov.complete(job.prompt_id, False, [["execution_interrupted", {}]])
    assert job.state is JobState.FAILED and job.reason is Reason.EXEC_TIMEOUT and job.attempts == 1


def test_memory_gate_holds_releases_models_once_then_opens_when_the_threshold_rises(tmp_path):
    probe = FakeProbe(used=12 << 30, total=16 << 30)  # 75 % used
    gov, _ = make_governor(tmp_path, probe=probe, max_used_fraction=0.5)
    job = submit(gov)
    first = gov.dispatch(0)
    assert first.job is None and first.release_models
    assert job.state is JobState.WAITING_FOR_MEMORY
    again = gov.dispatch(0)
    assert again.job is None and not again.release_models  # once per wait
    gov.update_config({"max_used_fraction": 0.9})
    assert gov.dispatch(0).job is job


def test_memory_gate_timeout_can_fail_or_run_anyway(tmp_path):
    clock = FakeClock()
    probe = FakeProbe(used=15 << 30, total=16 << 30)
    gov, host = make_governor(tmp_path, clock=clock, probe=probe, max_gate_wait=60, gate_timeout_action="fail")
    job = submit(gov, "c1")
    gov.dispatch(0)
    clock.advance(61)
    assert gov.dispatch(0).job is None
    assert job.state is JobState.FAILED and job.reason is Reason.MEMORY_GATE_TIMEOUT
    assert job.prompt_id in host.history
    gov.update_config({"gate_timeout_action": "run"})
    job2 = submit(gov, "c1")
    gov.dispatch(0)
    clock.advance(61)
    assert gov.dispatch(0).job is job2


def test_learned_peak_memory_gates_the_next_run_of_the_same_workflow(tmp_path):
    probe = FakeProbe(used=1 << 30, total=16 << 30)
    gov, _ = make_governor(tmp_path, probe=probe, learned_margin=0.0)
    prompt = {"1": {"class_type": "Big", "inputs": {"size": 4096, "seed": 1}}}
    first = submit(gov, prompt=prompt)
    gov.dispatch(0)
    probe.used = 9 << 30  # the run peaks 8 GiB above where it started
    gov.tick()
    probe.used = 1 << 30
    gov.complete(first.prompt_id, True, [])
    assert gov.stats.peak_bytes(first.fingerprint) == 8 << 30
    probe.used = 10 << 30  # 6 GiB free now: not enough for 8 GiB
    second = submit(gov, prompt={"1": {"class_type": "Big", "inputs": {"size": 4096, "seed": 2}}})
    assert second.fingerprint == first.fingerprint
    assert gov.dispatch(0).job is None
    probe.used = 2 << 30
    assert gov.dispatch(0).job is second


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


def test_restart_restores_queue_order_and_reruns_the_running_prompt(tmp_path):
    gov, _ = make_governor(tmp_path, retry_attempts=1)
    jobs = [submit(gov, c) for c in "AABBC"]
    running = gov.dispatch(0).job
    expected = [j.prompt_id for j in gov.scheduler]
    crash(gov)
    again, _ = make_governor(tmp_path, retry_attempts=1)
    restored = [j.prompt_id for j in again.scheduler]
    assert restored == [running.prompt_id, *expected]
    rerun = again.jobs[running.prompt_id]
    assert rerun.attempts == 1 and rerun.errors[-1]["reason"] == "server_restart"
    assert len(jobs) == 5
    # crash it again while it runs its second (last allowed) attempt: now it is failed, not rerun
    assert again.dispatch(0).job.prompt_id == running.prompt_id
    crash(again)
    third, _ = make_governor(tmp_path, retry_attempts=1)
    assert third.find(running.prompt_id).reason is Reason.MAX_ATTEMPTS
    assert [j.prompt_id for j in third.scheduler] == expected


def test_invalid_prompts_after_restart_are_recorded_as_failed(tmp_path):
    gov, _ = make_governor(tmp_path)
    bad, good = submit(gov), submit(gov)
    del gov
    again, host = make_governor(tmp_path, ready=False)
    again.recover(*again.load_unfinished(), {bad.prompt_id: "node type Missing not found"})
    assert again.find(bad.prompt_id).reason is Reason.INVALID_ON_RESTORE
    assert "Missing" in host.history[bad.prompt_id]["status"]["messages"][0][1]["exception_message"]
    assert [j.prompt_id for j in again.scheduler] == [good.prompt_id]


def test_two_instances_sharing_a_state_dir_share_concurrency_slots(tmp_path):
    shared = tmp_path / "shared"
    a, _ = make_governor(tmp_path / "a", instance="a", state_dir=shared)
    b, _ = make_governor(tmp_path / "b", instance="b", state_dir=shared)
    ja, jb = submit(a), submit(b)
    assert a.dispatch(0).job is ja
    assert b.dispatch(0).job is None  # max_concurrent = 1 across both
    a.complete(ja.prompt_id, True, [])
    assert b.dispatch(0).job is jb
    b.complete(jb.prompt_id, True, [])
    a.update_config({"max_concurrent": 2})
    b.tick()  # b notices the shared config file changed
    assert b.config.max_concurrent == 2
    ja2, jb2 = submit(a), submit(b)
    assert a.dispatch(0).job is ja2 and b.dispatch(0).job is jb2


def test_idempotency_records_survive_a_restart(tmp_path):
    gov, _ = make_governor(tmp_path)
    gov.idempotency_remember("k1", {"prompt_id": "p1"})
    del gov
    again, _ = make_governor(tmp_path)
    assert again.idempotency_lookup("k1") == {"prompt_id": "p1"}
    assert again.idempotency_lookup("k2") is None


def test_duplicate_guard_is_off_by_default_and_rejects_within_its_window(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock)
    prompt = {"1": {"class_type": "X", "inputs": {}}}
    gov.check_duplicate("c1", prompt)
    gov.remember_prompt("c1", prompt, "p1")
    gov.check_duplicate("c1", prompt)  # off: batch count sends identical prompts
    gov.update_config({"duplicate_window": 10})
    gov.remember_prompt("c1", prompt, "p1")
    with pytest.raises(GovernorError) as e:
        gov.check_duplicate("c1", prompt)
    assert e.value.status == 409 and e.value.extra_info["prompt_id"] == "p1"
    gov.check_duplicate("c2", prompt)  # another client is not a double submit
    clock.advance(11)
    gov.check_duplicate("c1", prompt)


def test_eta_uses_the_median_duration_of_the_same_workflow(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock)
    prompt = {"1": {"class_type": "W", "inputs": {}}}
    for seconds in (10, 30, 20):
        job = submit(gov, prompt=prompt)
        gov.dispatch(0)
        clock.advance(seconds)
        gov.complete(job.prompt_id, True, [])
    jobs = [submit(gov, prompt=prompt) for _ in range(3)]
    assert [gov.admission_info(j)["eta_s"] for j in jobs] == [0, 20, 40]
    gov.dispatch(0)
    clock.advance(5)
    assert gov.job_view(jobs[1])["eta_s"] in (15, 20)  # cached per queue change or refreshed


def test_queue_events_are_deltas_per_client(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock)
    mine = [submit(gov, "me") for _ in range(3)]
    submit(gov, "other")
    clock.advance(1)
    gov.tick()
    sent = {sid: data for name, data, sid in host.events if name == "governor.queue"}
    assert set(sent["me"]["jobs"]) == {j.prompt_id for j in mine}
    assert sent["me"]["pending"] == 4
    host.events.clear()
    clock.advance(1)
    gov.tick()
    assert host.of("governor.queue") == []  # nothing changed, nothing sent
    run_next(gov)
    clock.advance(1)
    gov.tick()
    updates = {sid: data for name, data, sid in host.events if name == "governor.queue"}
    # fair share put "other" second: after the first job ran, me's next two moved up one place each
    assert {p: j["position"] for p, j in updates["me"]["jobs"].items()} == {mine[1].prompt_id: 2,
                                                                            mine[2].prompt_id: 3}
    assert updates["other"]["jobs"][next(iter(updates["other"]["jobs"]))]["position"] == 1


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


def test_admission_info_for_a_job_that_already_started(tmp_path):
    gov, _ = make_governor(tmp_path)
    job = submit(gov)
    gov.dispatch(0)  # the worker took it before the HTTP answer was built
    info = gov.admission_info(job)
    assert info["position"] == 0 and info["eta_s"] == 0.0 and info["state"] == "running"


def test_expired_idempotency_keys_are_removed_from_the_store(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock, idempotency_ttl=60)
    gov.idempotency_remember("old", {"prompt_id": "p0"})
    clock.advance(61)
    for _ in range(100):  # the store is tidied every 100 finished jobs
        submit(gov)
        run_next(gov)
    rows = sqlite3.connect(tmp_path / "queue-a.sqlite3").execute("SELECT key FROM idempotency").fetchall()
    assert rows == []
