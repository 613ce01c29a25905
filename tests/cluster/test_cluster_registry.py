"""Server membership: heartbeats on Redis's clock, death after server_timeout, one rescuer per death,
and the whole failover path with the queue (requeue at the head, fencing of the server that comes back)."""

from __future__ import annotations

import time

from restoration_governor.governor.cluster_registry import ClusterRegistry
from restoration_governor.governor.redis_jobs import QueuedJob
from restoration_governor.governor.redis_queue import RedisQueue

BASIC = {"LoadImage", "SaveImage"}


def test_servers_register_and_list_with_heartbeat_age(redis_client, cluster_name):
    registry = ClusterRegistry(redis_client, cluster_name)
    key_a = registry.register("a", url="http://10.0.0.1:8188", gpu="GPU-aaa", node_classes=BASIC, slots={"limit": 1})
    key_b = registry.register("b", url="http://10.0.0.2:8188", gpu="GPU-bbb", node_classes=set(BASIC))
    key_c = registry.register("c", url="http://10.0.0.3:8188", gpu="GPU-ccc", node_classes=BASIC | {"GPENRestore"})
    assert key_a == key_b != key_c, "the classes set is content-addressed"
    assert redis_client.smembers(key_c) == BASIC | {"GPENRestore"}
    registry.heartbeat("a", state="running", running=["p1"], slots={"limit": 1, "in_use": 1})
    by_id = {s.server_id: s for s in registry.servers()}
    assert sorted(by_id) == ["a", "b", "c"]
    a = by_id["a"].summary()
    assert (a["url"], a["gpu"], a["running"], a["slots"], a["alive"]) == (
        "http://10.0.0.1:8188", "GPU-aaa", ["p1"], {"limit": 1, "in_use": 1}, True)
    assert 0 <= a["heartbeat_age_s"] < 2 and a["node_classes_hash"] == by_id["b"].classes_hash
    registry.deregister("b")
    assert sorted(s.server_id for s in registry.servers()) == ["a", "c"]


def test_a_silent_server_is_dead_after_the_timeout_and_declared_once(redis_client, cluster_name):
    timeout = 0.3
    registry = ClusterRegistry(redis_client, cluster_name, server_timeout=timeout)
    registry.register("a", url="http://a", gpu="g", node_classes=BASIC)
    registry.register("b", url="http://b", gpu="g", node_classes=BASIC)
    assert registry.dead_servers() == [] and not registry.declare_dead("a"), "a live server is not declared"
    time.sleep(timeout / 2)
    registry.heartbeat("b")
    time.sleep(timeout / 2 + 0.05)
    registry.heartbeat("b")
    assert registry.dead_servers() == ["a"] and registry.alive_ids() == {"b"}
    assert [registry.declare_dead("a") for _ in range(3)] == [True, False, False], "one rescuer per death"
    beat = registry.heartbeat("a")  # a comes back (a network cut healed)
    assert beat.was_dead and beat.previous_age > timeout
    assert registry.alive_ids() == {"a", "b"}
    assert not registry.heartbeat("a").was_dead
    assert registry.declare_dead("ghost") and not registry.declare_dead("ghost"), "unknown ids: once as well"


def test_failover_requeues_the_dead_servers_job_and_fences_its_late_finish(redis_client, cluster_name):
    timeout = 0.3
    registry = ClusterRegistry(redis_client, cluster_name, server_timeout=timeout)
    queue = RedisQueue(redis_client, cluster_name)
    key_a = registry.register("a", url="http://a", gpu="g", node_classes=BASIC)
    key_b = registry.register("b", url="http://b", gpu="g", node_classes=BASIC | {"GPENRestore"})
    queue.push(QueuedJob("photo", "alice", node_classes=frozenset(BASIC), queued_at=1.0, max_attempts=3))
    queue.push(QueuedJob("gpen", "bob", node_classes=frozenset(BASIC | {"GPENRestore"}), queued_at=2.0))
    queue.push(QueuedJob("later", "alice", node_classes=frozenset(BASIC), queued_at=3.0))
    assert queue.take("a", key_a, time.time()).prompt_id == "photo"
    assert queue.take("a", key_a, time.time()).prompt_id == "later", "a has no GPENRestore"
    assert queue.finish("later", 1)
    # a is killed; b keeps beating and runs the rescue loop
    deadline = time.monotonic() + 5 * timeout
    while "a" not in registry.dead_servers() and time.monotonic() < deadline:
        registry.heartbeat("b")
        time.sleep(0.02)
    rescued = []
    for server in set(queue.running().values()) - registry.alive_ids():
        if registry.declare_dead(server):
            rescued += queue.requeue_running_of(server, now=time.time()).requeued
    assert [j.prompt_id for j in rescued] == ["photo"]
    job = queue.take("b", key_b, time.time())
    assert (job.prompt_id, job.attempt, job.server) == ("photo", 2, "b"), "at the head, as its next attempt"
    assert not queue.finish("photo", 1), "a's late report is refused"
    assert queue.finish("photo", 2) and queue.take("b", key_b, time.time()).prompt_id == "gpen"


def test_the_start_up_log_names_the_redis_cluster_not_a_password(tmp_path):
    from restoration_governor.governor.cluster_context import ClusterContext

    ctx = ClusterContext.from_env({"GOVERNOR_REDIS_URL": "redis://:s3cret@10.0.0.9:6380/2", "GOVERNOR_CLUSTER": "archive",
                                   "GOVERNOR_SERVER_ID": "gpu0"}, state_dir=tmp_path)
    assert ctx is not None
    assert ctx.describe() == "Redis cluster 'archive' at 10.0.0.9:6380/2, server 'gpu0'"
