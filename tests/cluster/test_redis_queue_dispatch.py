"""Dispatch from the shared Redis queue: exactly once under concurrency, node-class eligibility, fencing,
dead-server requeue, persistence over a Redis restart, and O(log n) positions at 10,000 pending."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis
from restoration_governor.governor.redis_jobs import QueuedJob
from restoration_governor.governor.redis_queue import RedisQueue

BASIC = frozenset({"LoadImage", "SaveImage"})
GPEN = BASIC | {"GPENRestore"}


def _classes_key(client: redis.Redis, cluster: str, name: str, classes: frozenset[str]) -> str:
    key = f"rg:{{{cluster}}}:test-classes:{name}"
    client.sadd(key, *classes)
    return key


def test_concurrent_takers_never_share_or_lose_a_job(redis_url, cluster_name):
    total, takers = 1500, 4
    pusher = RedisQueue(redis.Redis.from_url(redis_url), cluster_name)
    taken: list[list[str]] = [[] for _ in range(takers)]
    done_pushing = threading.Event()
    errors: list[BaseException] = []

    def take_loop(i: int) -> None:
        queue = RedisQueue(redis.Redis.from_url(redis_url), cluster_name)  # a client (connection) each
        try:
            while True:
                job = queue.take(f"server-{i}", "", time.time())
                if job is not None:
                    taken[i].append(job.prompt_id)
                    assert queue.finish(job.prompt_id, job.attempt)
                elif done_pushing.is_set() and len(queue) == 0:
                    return
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=take_loop, args=(i,)) for i in range(takers)]
    for t in threads:
        t.start()
    for n in range(total):
        pusher.push(QueuedJob(f"job-{n}", f"client-{n % 7}", priority=n % 3, queued_at=time.time()))
    done_pushing.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    every = [pid for ids in taken for pid in ids]
    assert len(every) == total, "every job taken exactly once (none lost)"
    assert len(set(every)) == total, "no job taken twice"
    assert all(len(ids) > 0 for ids in taken), [len(ids) for ids in taken]
    assert pusher.running() == {}
    print(f"\n{total} jobs over {takers} concurrent takers: {[len(ids) for ids in taken]}")


def test_a_server_takes_only_jobs_whose_node_classes_it_has(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    basic = _classes_key(redis_client, cluster_name, "basic", BASIC)
    full = _classes_key(redis_client, cluster_name, "full", GPEN)
    for i in range(40):  # a long run of jobs the basic server cannot run, ahead of one it can
        queue.push(QueuedJob(f"gpen-{i}", "alice", node_classes=GPEN, queued_at=1.0))
    queue.push(QueuedJob("plain", "alice", node_classes=BASIC, queued_at=2.0))
    queue.push(QueuedJob("nothing-needed", "bob", priority=2, queued_at=2.0))

    assert queue.take("basic-server", basic, 10.0).prompt_id == "plain"
    assert queue.take("basic-server", basic, 10.0).prompt_id == "nothing-needed"
    assert queue.take("basic-server", basic, 10.0) is None, "only GPEN jobs are left"
    assert queue.take("full-server", full, 10.0).prompt_id == "gpen-0"
    assert len(queue) == 39


def test_retry_backoff_is_respected_across_servers(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    queue.push(QueuedJob("flaky", "alice", queued_at=1.0))
    queue.push(QueuedJob("next", "bob", queued_at=1.0))
    job = queue.take("a", "", 5.0)
    assert queue.retry("flaky", job.attempt, not_before=20.0, now=5.0)
    assert queue.page(0, 5)[0].prompt_id == "flaky", "a retry waits at the head of its tier"
    assert queue.take("b", "", 6.0).prompt_id == "next", "still in backoff: the next job goes first"
    assert queue.take("b", "", 19.9) is None
    again = queue.take("b", "", 20.0)
    assert (again.prompt_id, again.attempt, again.server) == ("flaky", 2, "b")


def test_stale_attempt_cannot_finish_and_dead_servers_job_reruns_at_head(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    queue.push(QueuedJob("long", "alice", queued_at=1.0, max_attempts=3))
    for i in range(3):
        queue.push(QueuedJob(f"n{i}", "bob", queued_at=2.0))
    queue.push(QueuedJob("urgent", "carol", priority=0, queued_at=3.0))
    urgent = queue.take("a", "", 4.0)
    assert urgent.prompt_id == "urgent" and queue.finish("urgent", urgent.attempt)
    first = queue.take("a", "", 4.0)
    assert (first.prompt_id, first.attempt, queue.running()) == ("long", 1, {"long": "a"})

    result = queue.requeue_running_of("a", now=50.0)  # server a was declared dead
    assert [j.prompt_id for j in result.requeued] == ["long"] and not result.exhausted
    assert queue.requeue_running_of("a", now=51.0).requeued == [], "idempotent"
    queue.push(QueuedJob("urgent2", "carol", priority=0, queued_at=52.0))
    assert [j.prompt_id for j in queue.page(0, 10)] == ["urgent2", "long", "n0", "n1", "n2"]
    assert queue.position("long") == 2 and queue.get("long").queued_at == 50.0

    urgent2 = queue.take("b", "", 60.0)
    assert urgent2.prompt_id == "urgent2" and queue.finish("urgent2", urgent2.attempt)
    second = queue.take("b", "", 60.0)
    assert (second.prompt_id, second.attempt, second.server) == ("long", 2, "b")
    assert not queue.finish("long", 1), "server a came back: its attempt is fenced off"
    assert not queue.retry("long", 1, not_before=0.0, now=61.0)
    assert queue.running() == {"long": "b"}
    assert queue.finish("long", 2)
    assert not queue.finish("long", 2), "a job is finished once"
    assert queue.get("long") is None and queue.running() == {}


def test_attempt_cap_on_dead_server_requeue(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    queue.push(QueuedJob("poison", "alice", queued_at=1.0, max_attempts=2))
    assert queue.take("a", "", 2.0).attempt == 1
    assert len(queue.requeue_running_of("a", now=3.0).requeued) == 1
    assert queue.take("b", "", 4.0).attempt == 2
    result = queue.requeue_running_of("b", now=5.0)
    assert result.requeued == [] and [(j.prompt_id, j.attempt) for j in result.exhausted] == [("poison", 2)]
    assert queue.get("poison") is None and len(queue) == 0


def test_cancel_and_duplicate_push(redis_client, cluster_name):
    queue = RedisQueue(redis_client, cluster_name)
    queue.push(QueuedJob("x", "alice", queued_at=1.0, payload='{"prompt": {}}'))
    with pytest.raises(KeyError, match="already queued"):
        queue.push(QueuedJob("x", "alice", queued_at=1.0))
    assert "x" in queue and queue.remove("x").payload == '{"prompt": {}}'
    assert "x" not in queue and queue.remove("x") is None and len(queue) == 0


def _fill(queue: RedisQueue, n: int, rng: random.Random) -> None:
    for i in range(n):
        queue.push(QueuedJob(f"j{i}", f"c{rng.randrange(50)}", priority=rng.choice([0, 1, 2]), queued_at=float(i)))


def test_position_and_dispatch_stay_logarithmic_at_ten_thousand(redis_client, cluster_name):
    rng = random.Random(7)
    timings = {}
    for n in (1_000, 10_000):
        queue = RedisQueue(redis_client, f"{cluster_name}-{n}")
        start = time.perf_counter()
        _fill(queue, n, rng)
        timings[f"push@{n}"] = (time.perf_counter() - start) / n
        sample = [f"j{rng.randrange(n)}" for _ in range(300)]
        start = time.perf_counter()
        positions = [queue.position(pid) for pid in sample]
        timings[f"position@{n}"] = (time.perf_counter() - start) / len(sample)
        start = time.perf_counter()
        page = queue.page(n // 2, 50)
        timings[f"page50@{n}"] = time.perf_counter() - start
        start = time.perf_counter()
        taken = [queue.take("s", "", 1e12) for _ in range(200)]
        timings[f"take@{n}"] = (time.perf_counter() - start) / len(taken)
        assert all(p is not None and 1 <= p <= n for p in positions)
        assert len(page) == 50 and all(t is not None for t in taken) and len(queue) == n - 200
    print("\n" + "  ".join(f"{k}={v * 1e6:.0f}us" for k, v in timings.items()))


def test_pending_jobs_survive_a_redis_restart(redis_server_factory, cluster_name):
    server = redis_server_factory("redis-restart")
    client = redis.Redis.from_url(server.url)
    queue = RedisQueue(client, cluster_name)
    for i in range(30):
        queue.push(QueuedJob(f"j{i}", f"c{i % 3}", priority=i % 2, queued_at=float(i)))
    running = queue.take("a", "", 100.0)
    before = [j.prompt_id for j in queue.page(0, 100)]

    server.restart()  # clean shutdown: the AOF is flushed
    assert [j.prompt_id for j in queue.page(0, 100)] == before, "same client, reconnected; same order"
    assert queue.running() == {running.prompt_id: "a"}

    client.bgrewriteaof()  # the rewrite fsyncs a fresh AOF base; wait for it, then kill -9
    while any(int(client.info("persistence")[k]) for k in ("aof_rewrite_in_progress", "aof_rewrite_scheduled")):
        time.sleep(0.01)
    server.restart(hard=True)
    assert [j.prompt_id for j in queue.page(0, 100)] == before
    assert queue.take("b", "", 200.0).prompt_id == before[0], "the order (and its counters) came back"
    client.close()


def test_redis_down_raises_connection_error_and_nothing_is_lost(redis_server_factory, cluster_name):
    server = redis_server_factory("redis-down")
    queue = RedisQueue(redis.Redis.from_url(server.url, socket_timeout=2), cluster_name)
    queue.push(QueuedJob("kept", "alice", queued_at=1.0))
    server.stop()
    start = time.perf_counter()
    with pytest.raises(redis.ConnectionError):
        queue.push(QueuedJob("refused", "alice", queued_at=2.0))
    print(f"\npush with Redis down failed after {time.perf_counter() - start:.2f} s")
    with pytest.raises(redis.ConnectionError):
        queue.take("a", "", 3.0)
    server.start()
    assert [j.prompt_id for j in queue.page(0, 10)] == ["kept"] and "refused" not in queue
    assert queue.take("a", "", 4.0).prompt_id == "kept"
