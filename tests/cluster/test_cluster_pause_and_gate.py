"""Cluster mode keeps single-server mode's pause and memory-gate rules, on a real ``redis-server``.

Pause holds the shared queue's queue-timeout clock (each job keeps the time it had left, whichever
server resumes, shifted once); the memory gate uses the workflow's learned peak and ``max_gate_wait``
per server. In-process governors with fake clocks and memory probes (as test_cluster_governor.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_cluster_governor import join, poll

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from governor_fakes import FakeProbe, make_governor, submit

GiB = 1 << 30
BIG = {"1": {"class_type": "X", "inputs": {"size": 4096, "seed": 1}}}


@pytest.fixture
def pair(tmp_path, redis_url, cluster_name):
    govs = []
    for name in ("a", "b"):
        gov, _ = make_governor(tmp_path / name, instance=name, probe=FakeProbe(used=1 * GiB, total=16 * GiB))
        join(gov, redis_url, cluster_name, name, tmp_path / name)
        govs.append(gov)
    return govs


def advance(govs, seconds: float) -> None:
    for gov in govs:
        gov.rt.clock.advance(seconds)


def deadline(redis_client, cluster_name: str, prompt_id: str) -> float:
    return float(redis_client.zscore(f"rg:{{{cluster_name}}}:deadlines", prompt_id))


@pytest.mark.parametrize("resumer", ["a", "b"])
def test_pause_holds_the_queue_timeout_and_each_job_keeps_its_time(pair, resumer, redis_client, cluster_name):
    a, b = pair
    job = submit(a, "alice", timeout=2.0)
    advance(pair, 0.5)  # 1.5 s left
    a.set_dispatch_state("paused")
    advance(pair, 3.0)  # a 3 s pause: past the 2 s timeout
    poll(b)  # b applies the pause; neither expires the job
    poll(a)
    assert b.find(job.prompt_id).state.value == "pending"
    (a if resumer == "a" else b).set_dispatch_state("running")
    (b if resumer == "a" else a).set_dispatch_state("running")  # a second resume moves no clock again
    poll(a)
    poll(b)
    now = a.rt.clock()
    assert deadline(redis_client, cluster_name, job.prompt_id) - now == pytest.approx(1.5)
    assert b.find(job.prompt_id).queued_at == pytest.approx(now - 0.5)
    advance(pair, 1.0)  # 0.5 s left
    poll(a)
    poll(b)
    assert a.find(job.prompt_id).state.value == "pending"
    ran = b.dispatch(0).job
    assert ran is not None and ran.prompt_id == job.prompt_id
    b.complete(job.prompt_id, True, None)
    assert a.find(job.prompt_id).state.value == "success"


def test_a_job_queued_during_the_pause_keeps_its_whole_timeout(pair, redis_client, cluster_name):
    a, b = pair
    a.set_dispatch_state("paused")
    advance(pair, 1.0)
    job = submit(b, "alice", timeout=2.0)
    advance(pair, 3.0)
    b.set_dispatch_state("running")
    assert deadline(redis_client, cluster_name, job.prompt_id) - b.rt.clock() == pytest.approx(2.0)


def test_after_the_resume_the_remaining_time_still_runs_out(pair):
    a, b = pair
    job = submit(a, "alice", timeout=2.0)
    advance(pair, 0.5)
    b.set_dispatch_state("paused")
    advance(pair, 3.0)
    a.set_dispatch_state("running")
    advance(pair, 1.6)  # past the 1.5 s it had left
    poll(a)
    poll(b)
    final = b.find(job.prompt_id)
    assert (final.state.value, final.reason.value) == ("failed", "queue_timeout")


def test_a_pause_seen_late_by_a_server_still_expires_nothing(pair):
    a, b = pair
    job = submit(a, "alice", timeout=2.0)
    a.set_dispatch_state("paused")
    advance(pair, 3.0)
    from restoration_governor.governor import cluster_work

    cluster_work.expire_queued(b.rt, b.rt.clock())  # b has not applied the pause yet: Redis holds the clock
    assert a.find(job.prompt_id).state.value == "pending"


def test_drain_keeps_dispatching_the_shared_queue(pair):
    a, b = pair
    job = submit(a, "alice")
    a.set_dispatch_state("draining")
    poll(b)
    assert b.dispatch(0).job.prompt_id == job.prompt_id


def _learn_peak(gov, peak: int) -> str:
    """Run one BIG job on ``gov`` whose memory peaks ``peak`` bytes above where it started."""
    probe = gov.rt.probe.probes[0]
    first = submit(gov, "alice", prompt=BIG)
    assert gov.dispatch(0).job.prompt_id == first.prompt_id
    probe.used += peak
    gov.tick()
    probe.used -= peak
    gov.complete(first.prompt_id, True, None)
    assert gov.stats.peak_bytes(first.fingerprint) == peak
    return first.fingerprint


def test_a_learned_peak_closes_the_gate_and_the_job_goes_to_another_server(pair):
    a, b = pair
    _learn_peak(a, 8 * GiB)  # a learned: this workflow needs 8 GiB (+20 % margin)
    a.rt.probe.probes[0].used = 10 * GiB  # 6 GiB free on a: below 9.6 GiB (the configured limits pass: 62 %)
    second = submit(a, "alice", prompt={"1": {"class_type": "X", "inputs": {"size": 4096, "seed": 2}}})
    first_try = a.dispatch(0)
    assert first_try.job is None and first_try.release_models  # as single-server: unload models once
    assert a.dispatch(0).job is None
    assert not a.rt.last_gate.open and "needs 9830 MiB" in a.rt.last_gate.why
    ran = b.dispatch(0).job  # b never ran it (no learned peak) and has room
    assert ran is not None and ran.prompt_id == second.prompt_id


@pytest.mark.parametrize("action", ["fail", "run"])
def test_max_gate_wait_then_the_configured_action(pair, action):
    a, b = pair
    a.update_config({"max_gate_wait": 60, "gate_timeout_action": action})
    poll(b)
    fingerprint = _learn_peak(a, 8 * GiB)
    a.rt.probe.probes[0].used = 10 * GiB
    job = submit(b, "alice", prompt={"1": {"class_type": "X", "inputs": {"size": 4096, "seed": 3}}})
    assert job.fingerprint == fingerprint
    assert a.dispatch(0).release_models
    advance(pair, 59)
    assert a.dispatch(0).job is None  # still within max_gate_wait: left to others
    advance(pair, 2)
    outcome = a.dispatch(0)
    if action == "run":
        assert outcome.job is not None and outcome.job.prompt_id == job.prompt_id
        return
    assert outcome.job is None
    final = b.find(job.prompt_id)
    assert (final.state.value, final.reason.value) == ("failed", "memory_gate_timeout")
    assert "waited 61 s for memory" in final.errors[-1]["message"]
    assert job.prompt_id in a.rt.host.history
    assert b.dispatch(0).job is None  # failed once, gone from the shared queue


def test_a_resume_moves_ten_thousand_deadlines_in_one_script(redis_client, cluster_name):
    import time

    from restoration_governor.governor.redis_jobs import QueuedJob
    from restoration_governor.governor.redis_queue import RedisQueue

    n = 10_000
    queue = RedisQueue(redis_client, cluster_name, aging_interval=60.0)
    pipe_fill = [QueuedJob(f"j{i}", f"c{i % 50}", priority=1 + i % 2, queued_at=float(i % 100), queue_timeout=50.0)
                 for i in range(n)]
    for job in pipe_fill:
        queue.push(job)
    order = [j.prompt_id for j in queue.page(0, 100)]
    assert queue.set_state('"paused"', 120.0) == 0.0
    assert queue.expire(500.0) == []  # held: nothing expires, whatever the time
    start = time.perf_counter()
    held = queue.set_state('"running"', 123.0)
    elapsed = time.perf_counter() - start
    print(f"\nresume with {n} pending: {elapsed * 1e3:.0f} ms ({elapsed / n * 1e6:.1f} us a job)")
    assert held == 3.0
    assert queue.set_state('"running"', 130.0) == 0.0  # a second resume moves nothing
    assert float(redis_client.zscore(f"rg:{{{cluster_name}}}:deadlines", "j7")) == 7.0 + 3.0 + 50.0
    assert queue.get("j7").queued_at == 10.0
    assert [j.prompt_id for j in queue.page(0, 100)] == order
    j7 = queue.get("j7")  # low priority: its aging entry (promotion at queued_at + 60 s) moved too
    assert redis_client.zscore(f"rg:{{{cluster_name}}}:aging:1", f"{j7.seq:015d}j7") == 10.0
    assert {q.prompt_id for q in queue.expire(60.0 + 3.0, limit=n)} == {f"j{i}" for i in range(n) if i % 100 <= 10}
