"""The SQLite store against the ``JobStore`` contract written in governor/store.py."""

from __future__ import annotations

from restoration_governor.governor.jobs import Job, JobState, Priority
from restoration_governor.governor.store import SqliteJobStore


def job(pid: str, seq: int, *, tier: int = 1, lane: int = 1, vstart: float = 0.0,
        state: JobState = JobState.PENDING) -> Job:
    return Job(prompt_id=pid, seq=seq, prompt={"1": {"class_type": "X"}}, extra_data={"client_id": "c"},
               outputs=["1"], client_id="c", fair_key="c", priority=Priority(tier), created_at=1.0,
               queued_at=1.0, max_attempts=3, tier=tier, lane=lane, vstart=vstart, state=state)


def test_queued_jobs_load_in_dispatch_order_and_survive_reopening(tmp_path):
    store = SqliteJobStore(tmp_path / "q.sqlite3")
    for j in [job("low", 1, tier=2), job("b", 2, vstart=1.0), job("a", 3, vstart=0.0), job("head", 4, lane=0),
              job("run", 5, state=JobState.RUNNING), job("done", 6, state=JobState.SUCCESS)]:
        store.insert(j)
    store.close()
    again = SqliteJobStore(tmp_path / "q.sqlite3")
    assert [j.prompt_id for j in again.load_queued()] == ["head", "a", "b", "low"]
    assert [j.prompt_id for j in again.load_running()] == ["run"]
    assert again.max_seq() == 6


def test_update_changes_the_mutable_fields_only(tmp_path):
    store = SqliteJobStore(tmp_path / "q.sqlite3")
    original = job("p", 1)
    store.insert(original)
    changed = job("p", 99)
    changed.prompt, changed.client_id, changed.fair_key = {}, "someone-else", "someone-else"
    changed.state, changed.attempts, changed.errors = JobState.FAILED, 2, [{"message": "x"}]
    store.update(changed)
    stored = store.get("p")
    assert stored.state is JobState.FAILED and stored.attempts == 2 and stored.errors == [{"message": "x"}]
    assert stored.seq == 1 and stored.prompt == original.prompt and stored.client_id == "c"


def test_an_idempotency_record_answers_until_it_expires_then_reads_as_absent(tmp_path):
    store = SqliteJobStore(tmp_path / "q.sqlite3")
    store.idempotency_put("k", {"prompt_id": "p1"}, expires_at=100.0)
    assert store.idempotency_get("k", 99.9) == {"prompt_id": "p1"}
    assert store.idempotency_get("k", 100.0) is None
    store.idempotency_put("k", {"prompt_id": "p2"}, expires_at=200.0)  # the key is free again: replaced
    assert store.idempotency_get("k", 150.0) == {"prompt_id": "p2"}
    store.idempotency_prune(250.0)
    assert store.idempotency_get("k", 0.0) is None
