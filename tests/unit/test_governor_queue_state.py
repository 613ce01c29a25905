"""The queue state keeps its structures in step through every transition (governor/queue_state.py)."""

from __future__ import annotations

from restoration_governor.governor.jobs import Job, JobState, Priority
from restoration_governor.governor.queue_state import QueueState

_seq = iter(range(1, 10**9))


def job(client: str = "c", timeout: float | None = None, at: float = 100.0) -> Job:
    seq = next(_seq)
    return Job(prompt_id=f"{client}-{seq}", seq=seq, prompt={}, extra_data={}, outputs=[], client_id=client,
               fair_key=client, priority=Priority.NORMAL, created_at=at, queued_at=at, max_attempts=3,
               queue_timeout=timeout)


def test_a_job_moves_from_queued_to_running_to_finished_and_every_count_follows():
    q = QueueState(0.0, last_seq=0, last_dispatch_number=41)
    a, b = job("a"), job("a")
    q.enqueue(a)
    q.enqueue(b)
    assert q.pending == 2 and q.waiting_with_reservations("a") == 2 and set(q.jobs) == {a.prompt_id, b.prompt_id}
    q.start(a, None, 123)
    assert q.pending == 1 and q.waiting_with_reservations("a") == 1 and a.dispatch_number == 42
    assert q.attempt(a.prompt_id).memory_baseline == 123 and a.prompt_id in q.jobs
    a.state = JobState.SUCCESS
    q.finish(a, keep=10)
    assert a.prompt_id not in q.jobs and q.attempt(a.prompt_id) is None and q.find(a.prompt_id) is a
    q.unqueue(b)
    assert q.pending == 0 and q.waiting_with_reservations("a") == 0 and q.waiting_with_reservations() == 0


def test_reservations_count_until_released_and_the_finished_cache_is_bounded():
    q = QueueState(0.0, last_seq=0, last_dispatch_number=0)
    q.reserve("x")
    q.reserve("x")
    assert q.waiting_with_reservations() == 2 and q.waiting_with_reservations("x") == 2
    q.unreserve("x")
    q.unreserve("x")
    q.unreserve("x")  # one too many never goes negative
    assert q.waiting_with_reservations("x") == 0
    done = [job() for _ in range(5)]
    for j in done:
        q.enqueue(j)
        q.unqueue(j)
        q.finish(j, keep=3)
    assert list(q.finished) == [j.prompt_id for j in done[2:]]


def test_expired_deadlines_skip_jobs_that_started_or_were_requeued():
    q = QueueState(0.0, last_seq=0, last_dispatch_number=0)
    waits, runs, requeued = job(timeout=10), job(timeout=10), job(timeout=10)
    for j in (waits, runs, requeued):
        q.enqueue(j)
    q.start(runs, None, None)
    runs.state = JobState.RUNNING
    q.unqueue(requeued)
    requeued.queued_at = 105.0  # back in the queue later: a new deadline
    q.enqueue(requeued)
    assert q.pop_expired(110.0) == [waits]
    assert q.pop_expired(110.0) == []
    assert q.pop_expired(115.0) == [requeued]


def test_a_new_head_ends_the_previous_heads_memory_wait():
    q = QueueState(0.0, last_seq=0, last_dispatch_number=0)
    first, second = job(), job()
    q.enqueue(first)
    q.enqueue(second)
    wait, previous = q.gate_wait(first)
    wait.since = 1.0
    assert previous is None and q.gate_wait(first) == (wait, None)
    fresh, previous = q.gate_wait(second)
    assert previous is first and fresh.since is None and fresh.prompt_id == second.prompt_id
    assert q.start(second, None, None) is fresh and q.gate is None


def test_a_hold_gives_each_job_back_the_time_it_was_held_and_a_job_queued_meanwhile_its_whole_timeout():
    q = QueueState(0.0, last_seq=0, last_dispatch_number=0)
    early, late = job("a", timeout=10.0, at=100.0), job("b", timeout=10.0, at=105.0)
    q.enqueue(early)
    q.hold(now=102.0)
    q.enqueue(late)  # queued while held
    assert q.seconds_left(early, now=120.0) == 8.0 and q.pop_expired(now=120.0) == []
    moved = q.release(now=110.0)
    assert {j.prompt_id for j in moved} == {early.prompt_id, late.prompt_id}
    assert early.deadline() == 118.0  # 8 s left when the hold began, from the release on
    assert late.deadline() == 120.0  # the whole 10 s from the release, not 15
    assert [j.prompt_id for j in q.pop_expired(now=118.5)] == [early.prompt_id]
