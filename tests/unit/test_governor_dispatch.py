"""Dispatch: order, the memory gate, learned peaks, shared concurrency slots (governor/dispatch.py)."""

from __future__ import annotations

from governor_fakes import FakeClock, FakeProbe, make_governor, run_next, submit
from restoration_governor.governor.jobs import JobState, Priority, Reason


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
