"""Positions, ETAs and position events (governor/positions.py)."""

from __future__ import annotations

from governor_fakes import FakeClock, make_governor, run_next, submit


def test_eta_uses_the_median_duration_of_the_same_workflow(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock)
    prompt = {"1": {"class_type": "W", "inputs": {}}}
    for seconds in (10, 30, 20):
        job = submit(gov, prompt=prompt)
        gov.dispatch(0)
        clock.advance(seconds)
        gov.complete(job.prompt_id, True, [])
    jobs = [submit(gov, prompt=prompt) for _ in range(3)]
    assert [gov.admission_info(j)["eta_s"] for j in jobs] == [0, 20, 40]
    gov.dispatch(0)
    clock.advance(5)
    assert gov.job_view(jobs[1])["eta_s"] in (15, 20)  # cached per queue change or refreshed


def test_queue_events_are_deltas_per_client(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock)
    mine = [submit(gov, "me") for _ in range(3)]
    submit(gov, "other")
    clock.advance(1)
    gov.tick()
    sent = {sid: data for name, data, sid in host.events if name == "governor.queue"}
    assert set(sent["me"]["jobs"]) == {j.prompt_id for j in mine}
    assert sent["me"]["pending"] == 4
    host.events.clear()
    clock.advance(1)
    gov.tick()
    assert host.of("governor.queue") == []  # nothing changed, nothing sent
    run_next(gov)
    clock.advance(1)
    gov.tick()
    updates = {sid: data for name, data, sid in host.events if name == "governor.queue"}
    # fair share put "other" second: after the first job ran, me's next two moved up one place each
    assert {p: j["position"] for p, j in updates["me"]["jobs"].items()} == {mine[1].prompt_id: 2,
                                                                            mine[2].prompt_id: 3}
    assert updates["other"]["jobs"][next(iter(updates["other"]["jobs"]))]["position"] == 1
