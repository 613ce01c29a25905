"""The Redis queue dispatches in exactly FairScheduler's order (same operations -> same order)."""

from __future__ import annotations

import random

import pytest
import redis
from restoration_governor.governor.jobs import Job, Priority
from restoration_governor.governor.redis_jobs import QueuedJob
from restoration_governor.governor.redis_queue import RedisQueue
from restoration_governor.governor.scheduler import FairScheduler

AGING = 5.0


def _job(q: QueuedJob) -> Job:
    return Job(prompt_id=q.prompt_id, seq=int(q.seq or 0), prompt={}, extra_data={}, outputs=[], client_id=q.fair_key,
               fair_key=q.fair_key, priority=Priority(q.priority), created_at=q.queued_at, queued_at=q.queued_at,
               max_attempts=3, tier=int(q.tier or 0), lane=q.lane, vstart=float(q.vstart))


class Twin:
    """The same operations applied to a FairScheduler and to the Redis queue."""

    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.sched = FairScheduler(AGING)
        self.queue = RedisQueue(client, cluster, aging_interval=AGING)
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, int] = {}  # prompt id -> attempt
        self.now = 1_000.0
        self.n = 0
        self.promotions = 0

    def push(self, client: str, priority: int, head: bool) -> None:
        self.n += 1
        q = self.queue.push(QueuedJob(f"p{self.n}", client, priority=priority, queued_at=self.now), head=head)
        job = _job(q)
        self.sched.push(job, head=head)
        assert (job.lane, job.vstart) == (q.lane, q.vstart), "tags assigned at push"
        self.jobs[job.prompt_id] = job

    def take(self) -> str | None:
        expected = self.sched.first(lambda j: j.not_before <= self.now)
        if expected is not None:
            self.sched.mark_dispatched(expected)
        got = self.queue.take("s1", "", self.now)
        assert (got and got.prompt_id) == (expected and expected.prompt_id)
        if got is not None:
            self.running[got.prompt_id] = got.attempt
        return got and got.prompt_id

    def retry(self, prompt_id: str, delay: float) -> None:
        job = self.jobs[prompt_id]
        job.not_before, job.queued_at = self.now + delay, self.now
        self.sched.push(job, head=True)
        assert self.queue.retry(prompt_id, self.running.pop(prompt_id), not_before=self.now + delay, now=self.now)

    def requeue(self, prompt_id: str, priority: int) -> None:
        job = self.jobs[prompt_id]
        job.priority = Priority(priority)
        self.sched.requeue(job, tier=priority)
        assert self.queue.requeue(prompt_id, priority, priority=priority)

    def remove(self, prompt_id: str) -> None:
        self.sched.remove(self.jobs[prompt_id])
        assert self.queue.remove(prompt_id) is not None

    def advance(self, seconds: float) -> None:
        self.now += seconds
        expected = [j.prompt_id for j in self.sched.promote_aged(self.now)]
        assert self.queue.promote_aged(self.now) == expected
        self.promotions += len(expected)

    def check_order(self) -> None:
        expected = [j.prompt_id for j in self.sched]
        assert [q.prompt_id for q in self.queue.page(0, len(expected) + 5)] == expected
        assert len(self.queue) == len(expected)
        for pid in expected[:: max(1, len(expected) // 7)]:
            assert self.queue.position(pid) == self.sched.position(self.jobs[pid])


def _random_operations(twin: Twin, rng: random.Random, steps: int) -> int:
    clients = ["alice", "bob", "carol", "dave"]
    taken = 0
    for step in range(steps):
        pending = [j.prompt_id for j in twin.sched]
        op = rng.random()
        if op < 0.40:
            twin.push(rng.choice(clients[: 1 + step % 4]), rng.choice([0, 1, 1, 2, 2]), head=rng.random() < 0.05)
        elif op < 0.65:
            taken += twin.take() is not None
        elif op < 0.72 and twin.running:
            twin.retry(rng.choice(sorted(twin.running)), rng.choice([0.0, 1.0, 7.0]))
        elif op < 0.77 and twin.running:
            pid = rng.choice(sorted(twin.running))
            assert twin.queue.finish(pid, twin.running.pop(pid))
        elif op < 0.83 and pending:
            twin.requeue(rng.choice(pending), rng.choice([0, 1, 2]))
        elif op < 0.86 and pending:
            twin.remove(rng.choice(pending))
        else:
            twin.advance(rng.uniform(0.0, AGING * 0.9))
        if step % 25 == 0:
            twin.check_order()
    twin.check_order()
    return taken


def _drain(twin: Twin) -> int:
    taken = 0
    while twin.take() is not None or any(j.not_before > twin.now for j in twin.sched):
        twin.advance(1.0)
        taken += 1
    return taken


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_dispatch_in_fair_scheduler_order(redis_client, cluster_name, seed):
    rng = random.Random(seed)
    twin = Twin(redis_client, cluster_name)
    taken = _random_operations(twin, rng, 700)
    taken += _drain(twin)
    assert taken > 200 and len(twin.queue) == 0
    assert twin.promotions > 20, "aging must have been exercised"


def test_pending_jobs_moved_from_a_local_queue_keep_their_order(redis_client, cluster_name):
    """Switching a server to cluster mode: its pending jobs enter Redis with their tags (keep_tags)."""
    rng = random.Random(11)
    local = Twin(redis_client, cluster_name + "-local")
    _random_operations(local, rng, 300)
    assert len(local.sched) > 20
    moved = Twin(redis_client, cluster_name)
    moved.now, moved.n = local.now, local.n
    for job in local.sched:
        copy = _job(QueuedJob(job.prompt_id, job.fair_key, priority=int(job.priority), tier=job.tier,
                              queued_at=job.queued_at, seq=job.seq))
        copy.lane, copy.vstart, copy.not_before = job.lane, job.vstart, job.not_before
        moved.sched.push(copy, keep_tags=True)
        moved.queue.push(QueuedJob(job.prompt_id, job.fair_key, priority=int(job.priority), tier=job.tier,
                                   queued_at=job.queued_at, seq=job.seq, lane=job.lane, vstart=int(job.vstart),
                                   not_before=job.not_before), keep_tags=True)
        moved.jobs[job.prompt_id] = copy
    moved.check_order()
    _random_operations(moved, rng, 300)  # new arrivals interleave with the moved jobs the same way
    _drain(moved)
    assert len(moved.queue) == 0


def test_thirty_prompts_of_one_client_interleave_with_two_of_others(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    for i in range(30):
        queue.push(QueuedJob(f"a{i}", "alice", queued_at=1.0))
    for name in ("bob", "carol"):
        for i in range(2):
            queue.push(QueuedJob(f"{name[0]}{i}", name, queued_at=2.0))
    order = [queue.take("s", "", 10.0).prompt_id for _ in range(8)]
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "a3"]
