"""The governor in cluster mode, in process, on a real ``redis-server``: two governors share one queue.

Each governor is the real facade with a SQLite store of its own, GPU slots in Redis and a
``ClusterQueue``; only ComfyUI is replaced (the fake host of the unit tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from restoration_governor.governor import cluster_setup
from restoration_governor.governor.cluster_context import ClusterContext
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.jobs import Priority
from restoration_governor.governor.redis_leases import RedisLeaseManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from governor_fakes import make_governor, submit

CLASSES = frozenset({"X", "Y"})


def join(gov, redis_url: str, cluster: str, server: str, tmp: Path, classes=CLASSES) -> ClusterContext:
    ctx = ClusterContext.from_env({"GOVERNOR_REDIS_URL": redis_url, "GOVERNOR_CLUSTER": cluster,
                                   "GOVERNOR_SERVER_ID": server}, state_dir=tmp)
    assert ctx is not None
    gov.rt.leases = RedisLeaseManager(ctx.redis, cluster, f"gpu-{server}", server)
    cluster_setup.attach(gov, ctx, f"gpu-{server}")
    cluster_setup.start(gov, classes, gov.rt.leases)
    gov.rt.leases.stop_heartbeat()
    return ctx


def poll(gov) -> None:
    """Run the governor's maintenance pass now (heartbeat, shared settings, cancels)."""
    gov.rt.cluster.last_maintenance = float("-inf")
    gov.tick()


@pytest.fixture
def pair(tmp_path, redis_url, cluster_name):
    a, host_a = make_governor(tmp_path / "a", instance="a")
    b, host_b = make_governor(tmp_path / "b", instance="b")
    ctx_a = join(a, redis_url, cluster_name, "a", tmp_path / "a")
    ctx_b = join(b, redis_url, cluster_name, "b", tmp_path / "b")
    return a, b, ctx_a, ctx_b


def test_cluster_mode_is_off_without_the_url(tmp_path):
    assert ClusterContext.from_env({}, state_dir=tmp_path) is None


def test_server_id_is_derived_once_and_kept(tmp_path, redis_url):
    first = ClusterContext.from_env({"GOVERNOR_REDIS_URL": redis_url}, state_dir=tmp_path, port=8190)
    (tmp_path / "server_id.8190").write_text("kept-id\n")
    again = ClusterContext.from_env({"GOVERNOR_REDIS_URL": redis_url}, state_dir=tmp_path, port=8190)
    assert first is not None and first.server_id.endswith("-8190") and first.cluster == "default"
    assert again is not None and again.server_id == "kept-id"
    assert first.public_url == "http://127.0.0.1:8190"


def test_a_job_admitted_on_one_server_runs_on_the_other_and_both_see_where(pair):
    a, b, ctx_a, ctx_b = pair
    job = submit(a, "alice", prompt={"1": {"class_type": "X", "inputs": {}}})
    assert a.admission_info(job)["position"] == 1
    assert b.find(job.prompt_id).state.value == "pending"
    taken = b.dispatch(0).job
    assert taken is not None and taken.prompt_id == job.prompt_id
    assert taken.sensitive == {"api_key_comfy_org": "secret"} and taken.client_id == "alice"
    assert a.dispatch(0).job is None  # taken once
    assert (ctx_a.origin_of(job.prompt_id), ctx_a.server_of(job.prompt_id)) == ("a", "b")
    assert a.job_view(a.find(job.prompt_id))["server"] == "b"
    b.complete(job.prompt_id, True, None)
    finished = a.find(job.prompt_id)
    assert (finished.state.value, finished.attempts) == ("success", 1)
    assert (ctx_b.origin_of(job.prompt_id), ctx_b.server_of(job.prompt_id)) == ("a", "b")


def test_caps_count_the_whole_cluster(pair):
    a, b, _, _ = pair
    a.update_config({"max_pending_per_client": 2})
    poll(b)  # b applies the shared settings at its next maintenance pass
    assert b.config.max_pending_per_client == 2
    submit(a, "alice")
    submit(b, "alice")
    with pytest.raises(GovernorError) as refused:
        b.reserve("alice")
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    b.reserve("bob")  # another client is not capped


def test_a_server_without_a_node_class_leaves_the_job_to_others(tmp_path, redis_url, cluster_name):
    a, _ = make_governor(tmp_path / "a", instance="a")
    small, _ = make_governor(tmp_path / "s", instance="s")
    join(a, redis_url, cluster_name, "a", tmp_path / "a")
    join(small, redis_url, cluster_name, "s", tmp_path / "s", classes=frozenset({"X"}))
    job = submit(a, prompt={"1": {"class_type": "Y", "inputs": {}}})
    assert small.dispatch(0).job is None
    assert a.dispatch(0).job.prompt_id == job.prompt_id


def test_cancel_priority_and_pause_act_cluster_wide(pair):
    a, b, _, _ = pair
    first = submit(a, "alice")
    second = submit(a, "alice")
    b.set_priority(second.prompt_id, Priority.HIGH, client_id=None, admin=True)
    assert a.job_view(a.find(second.prompt_id))["position"] == 1
    b.cancel(first.prompt_id)
    assert a.find(first.prompt_id).state.value == "cancelled"
    a.set_dispatch_state("paused")
    assert b.dispatch(0).job is None  # paused through a: b takes nothing, before its next poll
    a.set_dispatch_state("running")
    running = b.dispatch(0).job
    a.cancel(running.prompt_id)  # runs on b: b is asked to interrupt it
    poll(b)
    assert b.rt.queue.attempt(running.prompt_id).interrupt_reason is not None
    assert b.rt.host.interrupts == [running.prompt_id]


def test_switching_to_cluster_mode_moves_local_pending_jobs(tmp_path, redis_url, cluster_name, redis_client):
    solo, _ = make_governor(tmp_path / "solo", instance="solo")
    jobs = [submit(solo, "alice") for _ in range(3)]
    join(solo, redis_url, cluster_name, "solo", tmp_path / "solo")
    assert solo.rt.queue.pending == 0
    assert all(solo.store.get(j.prompt_id) is None for j in jobs)  # not recovered locally again
    assert redis_client.zcard(f"rg:{{{cluster_name}}}:pending") == 3
    ran = []
    for _ in jobs:  # in their admission order (one slot: each completes before the next starts)
        ran.append(solo.dispatch(0).job.prompt_id)
        solo.complete(ran[-1], True, None)
    assert ran == [j.prompt_id for j in jobs]


def test_queue_timeout_fails_a_shared_job_once(pair):
    a, b, _, _ = pair
    a.update_config({"queue_timeout": 30})
    job = submit(a, "alice")  # (nothing dispatches here: the job can only expire)
    for gov in (a, b):
        gov.rt.clock.advance(29)
    poll(a)
    assert a.find(job.prompt_id).state.value == "pending"
    for gov in (a, b):
        gov.rt.clock.advance(2)
    poll(b)
    poll(a)
    final = b.find(job.prompt_id)
    assert (final.state.value, final.reason.value) == ("failed", "queue_timeout")
    ended = a.rt.host.history.get(job.prompt_id) or b.rt.host.history.get(job.prompt_id)
    assert ended is not None and not (job.prompt_id in a.rt.host.history and job.prompt_id in b.rt.host.history)


def test_a_dead_servers_job_is_rescued_once_and_its_late_end_is_fenced_off(tmp_path, redis_url, cluster_name):
    from restoration_governor.governor import cluster_work

    govs = {}
    for name in ("a", "b"):
        gov, _ = make_governor(tmp_path / name, instance=name)
        join(gov, redis_url, cluster_name, name, tmp_path / name)
        gov.rt.cluster.ctx.registry.server_timeout = 0.3
        govs[name] = gov
    a, b = govs["a"], govs["b"]
    job = submit(a, "alice")
    assert a.dispatch(0).job.prompt_id == job.prompt_id
    def rescue() -> dict:
        with b.lock:  # as the maintenance tick calls it
            return cluster_work.rescue(b.rt, b.rt.clock())

    assert rescue() == {}  # a is alive
    deadline = time.monotonic() + 5
    while "a" in b.rt.cluster.ctx.registry.alive_ids():  # a stops heartbeating (Redis's clock decides)
        assert time.monotonic() < deadline
        b.rt.cluster.ctx.registry.heartbeat("b")
        time.sleep(0.05)
    b.rt.cluster.ctx.registry.heartbeat("b")
    assert set(rescue()) == {"a"}
    assert rescue() == {}  # once per death
    rerun = b.dispatch(0).job
    assert (rerun.prompt_id, rerun.attempts) == (job.prompt_id, 2)
    a.complete(job.prompt_id, True, None)  # a comes back and ends its old attempt: refused
    assert b.find(job.prompt_id).state.value == "running"
    b.complete(job.prompt_id, True, None)
    final = a.find(job.prompt_id)
    assert (final.state.value, final.attempts) == ("success", 2)


def test_a_cancelled_job_is_retried_from_a_server_that_never_had_it(pair):
    a, b, ctx_a, _ = pair
    job = submit(a, "alice", prompt={"1": {"class_type": "Y", "inputs": {"n": 7}}})
    a.cancel(job.prompt_id)
    assert b.store.get(job.prompt_id) is None
    again = b.retry(job.prompt_id, client_id=None, admin=True)
    assert (again.state.value, again.attempts) == ("pending", 0)
    assert ctx_a.origin_of(job.prompt_id) == "b"  # admitted again, through b
    ran = a.dispatch(0).job
    assert ran.prompt_id == job.prompt_id and ran.prompt == {"1": {"class_type": "Y", "inputs": {"n": 7}}}
    assert ran.sensitive == {"api_key_comfy_org": "secret"}


def test_every_server_sends_position_updates_for_the_shared_queue(pair):
    a, b, _, _ = pair
    first = submit(a, "alice")
    second = submit(b, "bob")
    poll(b)
    sent = {sid: data["jobs"] for name, data, sid in b.rt.host.events if name == "governor.queue"}
    assert sent["alice"][first.prompt_id]["position"] == 1 and sent["bob"][second.prompt_id]["position"] == 2
    b.rt.host.events.clear()
    a.cancel(first.prompt_id)
    b.rt.clock.advance(1)
    poll(b)
    moved = [data for name, data, sid in b.rt.host.events if name == "governor.queue" and sid == "bob"]
    assert moved and moved[-1]["jobs"][second.prompt_id]["position"] == 1 and moved[-1]["pending"] == 1
