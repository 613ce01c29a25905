"""GPU concurrency slots in Redis: max_concurrent across instances, TTL expiry of a dead holder, renewal."""

from __future__ import annotations

import socket
import time

from restoration_governor.governor.redis_leases import RedisLeaseManager, gpu_identity

GPU = "GPU-test-0000"


def test_slots_are_shared_by_instances_on_one_gpu(redis_client, cluster_name):
    a = RedisLeaseManager(redis_client, cluster_name, GPU, "server-a")
    b = RedisLeaseManager(redis_client, cluster_name, GPU, "server-b")
    other_gpu = RedisLeaseManager(redis_client, cluster_name, "GPU-other", "server-b")
    first = a.try_acquire(2, "p1")
    second = b.try_acquire(2, "p2")
    assert (first.slot, second.slot) == (0, 1)
    assert a.try_acquire(2, "p3") is None and b.try_acquire(2, "p3") is None, "max_concurrent=2 is reached"
    assert other_gpu.try_acquire(2, "p3") is not None, "another GPU has its own slots"
    held = a.in_use(2)
    assert [(h["slot"], h["instance"], h["prompt_id"]) for h in held] == [(0, "server-a", "p1"), (1, "server-b", "p2")]
    assert all(0 < h["ttl_s"] <= 15 for h in held)
    assert [h["slot"] for h in a.in_use(1)] == [0, 1], "a slot above a lowered limit is still shown while held"
    a.release(first)
    assert b.try_acquire(2, "p3").slot == 0


def test_a_dead_holder_loses_its_slot_after_the_ttl_and_cannot_free_the_next_ones(redis_client, cluster_name):
    ttl = 0.3
    dead = RedisLeaseManager(redis_client, cluster_name, GPU, "dead", ttl=ttl)
    alive = RedisLeaseManager(redis_client, cluster_name, GPU, "alive", ttl=ttl)
    stale = dead.try_acquire(1, "p1")  # and then the holder dies: no renewals
    acquired_at = time.monotonic()
    assert alive.try_acquire(1, "p2") is None
    time.sleep(ttl + 0.05)
    lease = alive.try_acquire(1, "p2")
    assert lease is not None and time.monotonic() - acquired_at >= ttl
    assert [x.slot for x in dead.renew()] == [0], "the old holder wakes up and learns that its slot lapsed"
    dead.release(stale)  # and its release must not free the new holder's slot
    assert [h["instance"] for h in alive.in_use(1)] == ["alive"]


def test_heartbeat_keeps_the_slot_past_its_ttl(redis_client, cluster_name):
    ttl = 0.3
    holder = RedisLeaseManager(redis_client, cluster_name, GPU, "holder", ttl=ttl)
    other = RedisLeaseManager(redis_client, cluster_name, GPU, "other", ttl=ttl)
    holder.try_acquire(1, "long-job")
    holder.start_heartbeat(interval=0.05)
    try:
        time.sleep(3 * ttl)
        assert other.try_acquire(1, "p2") is None, "renewed every 50 ms: still held after 3 TTLs"
        assert holder.lost == []
    finally:
        holder.stop_heartbeat()
    time.sleep(ttl + 0.05)
    assert other.try_acquire(1, "p2") is not None


def test_gpu_identity_is_the_nvml_uuid_or_host_and_device():
    key = gpu_identity(3)
    assert key.startswith("GPU-") or key == f"{socket.gethostname()}:3"
