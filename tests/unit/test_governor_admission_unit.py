"""Admission: caps and reservations, the duplicate guard, idempotency, durable admit (governor/admission.py)."""

from __future__ import annotations

import sqlite3

import pytest
from governor_fakes import FakeClock, make_governor, run_next, submit
from restoration_governor.governor.admission import queue_timeout_for, timeout_warning
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.jobs import Priority


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


def test_an_idempotency_key_reused_with_another_body_is_refused_with_422(tmp_path):
    gov, _ = make_governor(tmp_path)
    gov.idempotency_remember("k", {"prompt_id": "p1"}, "digest-a")
    assert gov.idempotency_lookup("k", "digest-a") == {"prompt_id": "p1"}
    with pytest.raises(GovernorError) as e:
        gov.idempotency_lookup("k", "digest-b")
    assert e.value.status == 422 and e.value.type == "idempotency_key_reused"
    assert e.value.extra_info["prompt_id"] == "p1"


def test_low_priority_waits_without_a_queue_timeout_unless_one_is_configured(tmp_path):
    gov, _ = make_governor(tmp_path, queue_timeout=300)
    assert submit(gov, "batch", Priority.LOW).queue_timeout is None
    assert submit(gov, "batch", Priority.LOW, timeout=60).queue_timeout == 60  # a request may still set one
    assert submit(gov, "ui").queue_timeout == 300
    gov.update_config({"queue_timeout_low": 3600})
    assert submit(gov, "batch", Priority.LOW, timeout=7200).queue_timeout == 3600
    assert queue_timeout_for(gov.config, Priority.LOW, 7200)[1] == \
        "queue timeout can only be shortened; kept 3600 s (queue_timeout_low)"


def test_an_admission_expected_to_outlast_its_timeout_says_so_and_what_to_change(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock, queue_timeout=300)
    prompt = {"1": {"class_type": "Slow", "inputs": {}}}
    first = submit(gov, prompt=prompt)
    gov.dispatch(0)
    clock.advance(200)
    gov.complete(first.prompt_id, True, None)  # this workflow takes 200 s
    jobs = [submit(gov, prompt=prompt) for _ in range(3)]
    infos = [gov.admission_info(j) for j in jobs]
    assert [i["eta_s"] for i in infos] == [0.0, 200.0, 400.0]
    assert [i["times_out_in_s"] for i in infos] == [None, None, 300.0]
    assert [timeout_warning(i, Priority.NORMAL) for i in infos[:2]] == [None, None]
    note = timeout_warning(infos[2], Priority.NORMAL)
    assert note.startswith("expected to start in about 400 s, but its queue timeout fails it in 300 s")
    assert "X-Priority: low" in note and "queue_timeout" in note


def test_an_id_only_the_store_still_knows_is_in_use_and_admission_answers_409_not_500(tmp_path):
    """A finished job that left the in-memory cache (history_retention) still owns its prompt_id."""
    gov, _ = make_governor(tmp_path)
    done = submit(gov, prompt_id="old-id")
    run_next(gov)
    gov.finished.clear()  # evicted from the cache; the store keeps the record
    assert gov.is_known("old-id") and not gov.is_known("new-id")
    with pytest.raises(GovernorError) as e:
        submit(gov, prompt_id=done.prompt_id)
    assert (e.value.status, e.value.type) == (409, "prompt_id_in_use")
    assert gov.find("old-id").state.value == "success" and gov.queue.pending == 0
