"""Dispatch order: tiers, fair share inside a tier, FIFO, head lane, aging (no ComfyUI)."""

from __future__ import annotations

from restoration_governor.governor.jobs import Job, Priority
from restoration_governor.governor.scheduler import FairScheduler

_seq = iter(range(1, 10**9))


def job(client: str, priority: Priority = Priority.NORMAL, at: float = 0.0) -> Job:
    seq = next(_seq)
    return Job(prompt_id=f"{client}-{seq}", seq=seq, prompt={}, extra_data={}, outputs=[], client_id=client,
               fair_key=client, priority=priority, created_at=at, queued_at=at, max_attempts=3, tier=int(priority))


def order(s: FairScheduler) -> list[str]:
    return [j.prompt_id.split("-")[0] for j in s]


def drain(s: FairScheduler) -> list[str]:
    out = []
    while len(s):
        j = s.first(lambda _: True)
        s.mark_dispatched(j)
        out.append(j.prompt_id.split("-")[0])
    return out


def test_priority_tiers_then_fifo_inside_a_tier():
    s = FairScheduler()
    for client, p in [("n1", Priority.NORMAL), ("l1", Priority.LOW), ("h1", Priority.HIGH), ("n2", Priority.NORMAL),
                      ("h2", Priority.HIGH), ("l2", Priority.LOW)]:
        s.push(job("x" + client, p))
    # one client ("x...") per job: fairness degenerates to FIFO inside each tier
    assert order(s) == ["xh1", "xh2", "xn1", "xn2", "xl1", "xl2"]


def test_round_robin_between_clients_one_client_cannot_starve_others():
    s = FairScheduler()
    for _ in range(20):
        s.push(job("A"))
    for _ in range(2):
        s.push(job("B"))
    for _ in range(3):
        s.push(job("C"))
    ran = drain(s)
    assert ran[:9] == ["A", "B", "C", "A", "B", "C", "A", "C", "A"]
    fourth_a = [i for i, c in enumerate(ran) if c == "A"][3]
    assert max(i for i, c in enumerate(ran) if c in "BC") < fourth_a


def test_a_client_arriving_later_is_served_next_not_after_the_backlog():
    s = FairScheduler()
    for _ in range(10):
        s.push(job("A"))
    for _ in range(3):  # A's first three run
        s.mark_dispatched(s.first(lambda _: True))
    s.push(job("B"))
    assert order(s)[:2] == ["A", "B"] or order(s)[0] == "B"
    assert order(s).index("B") <= 1


def test_idle_time_earns_no_credit():
    s = FairScheduler()
    s.push(job("B"))
    s.mark_dispatched(s.first(lambda _: True))  # B ran long ago
    for _ in range(5):
        s.push(job("A"))
    for _ in range(4):
        s.mark_dispatched(s.first(lambda _: True))
    for _ in range(3):
        s.push(job("B"))
    # B is interleaved with A's remaining work, it does not get three turns in a row.
    assert order(s)[:3] != ["B", "B", "B"]


def test_head_lane_runs_first_in_requeue_order():
    s = FairScheduler()
    normal = [job("A") for _ in range(3)]
    for j in normal:
        s.push(j)
    r1, r2 = job("R1"), job("R2")
    s.push(r1, head=True)
    s.push(r2, head=True)
    high = job("H", Priority.HIGH)
    s.push(high)
    assert [j.prompt_id for j in s][:3] == [high.prompt_id, r1.prompt_id, r2.prompt_id]


def test_positions_and_removal():
    s = FairScheduler()
    jobs = [job(f"c{i}") for i in range(5)]
    for j in jobs:
        s.push(j)
    assert [s.position(j) for j in jobs] == [1, 2, 3, 4, 5]
    s.remove(jobs[1])
    assert [s.position(j) for j in jobs if j is not jobs[1]] == [1, 2, 3, 4]
    assert jobs[1].prompt_id not in s


def test_first_skips_ineligible_jobs():
    s = FairScheduler()
    a, b = job("A"), job("B")
    s.push(a)
    s.push(b)
    assert s.first(lambda j: j is not a) is b


def test_aging_promotes_low_to_normal_to_high():
    s = FairScheduler(aging_interval=100)
    low = job("L", Priority.LOW, at=0)
    s.push(low)
    for t in (10, 20):
        s.push(job(f"N{t}", Priority.NORMAL, at=t))
    assert order(s)[-1] == "L"
    assert s.promote_aged(99) == []
    assert s.promote_aged(100) == [low]
    assert low.tier == int(Priority.NORMAL)
    assert [j.prompt_id[:3] for j in s.promote_aged(150)] == ["N10", "N20"]  # normal jobs age too
    assert s.promote_aged(200) == [low]
    assert low.tier == int(Priority.HIGH)
    assert order(s)[0] == "L"
    assert s.promote_aged(10_000) == []  # already at the top


def test_aging_ignores_stale_entries_after_a_priority_change():
    s = FairScheduler(aging_interval=100)
    low = job("L", Priority.LOW, at=0)
    s.push(low)
    low.priority = Priority.NORMAL
    s.requeue(low, tier=int(Priority.NORMAL))
    assert s.promote_aged(100) == [low]  # normal -> high after 100 s of waiting
    assert low.tier == 0


def test_restoring_persisted_tags_reproduces_the_order():
    s = FairScheduler()
    jobs = [job(c) for c in "AAABBC"]
    for j in jobs:
        s.push(j)
    before = [j.prompt_id for j in s]
    restored = FairScheduler()
    for j in sorted(jobs, key=lambda j: j.sort_key()):
        restored.push(j, keep_tags=True)
    assert [j.prompt_id for j in restored] == before
    restored.push(job("D"))  # a newcomer after a restart still gets a fair slot near the front
    assert [j.prompt_id.split("-")[0] for j in restored].index("D") <= 3
