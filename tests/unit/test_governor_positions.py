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


def test_eta_is_unknown_while_a_running_duration_is_unknown_and_while_paused(tmp_path):
    clock = FakeClock()
    gov, _ = make_governor(tmp_path, clock=clock)
    first, second = submit(gov, prompt={"1": {"class_type": "New", "inputs": {}}}), submit(gov)
    assert gov.admission_info(first)["eta_s"] == 0.0  # first in line, nothing running: it starts now
    gov.dispatch(0)
    assert gov.job_view(second)["eta_s"] is None  # nothing has ever run: no duration to go by
    clock.advance(10)
    gov.complete(first.prompt_id, True, None)
    third = submit(gov)
    gov.set_dispatch_state("paused")
    assert gov.job_view(third)["eta_s"] is None and gov.admission_info(third)["eta_s"] is None
    gov.set_dispatch_state("running")
    assert gov.job_view(third)["eta_s"] == 10.0


def test_eta_counts_down_steadily_while_the_running_prompt_overruns(tmp_path):
    clock = FakeClock()
    gov, host = make_governor(tmp_path, clock=clock)
    prompt = {"1": {"class_type": "W", "inputs": {}}}
    job = submit(gov, "me", prompt=prompt)
    gov.dispatch(0)
    clock.advance(100)
    gov.complete(job.prompt_id, True, None)  # this workflow takes 100 s
    submit(gov, "me", prompt=prompt)
    waiting = submit(gov, "me", prompt=prompt)
    gov.dispatch(0)
    etas = []
    for _ in range(12):  # from 80 s to 135 s into a run that usually takes 100 s
        clock.advance(5 if etas else 80)
        etas.append(gov.job_view(waiting)["eta_s"])
    # a steady countdown; once the run is within a tenth of its usual time and still going, it is
    # expected to take as long again (one re-estimate), then the countdown goes on steadily
    assert etas == [20.0, 15.0, 10.0, 105.0, 100.0, 95.0, 90.0, 85.0, 80.0, 75.0, 70.0, 65.0]
    gov.tick()
    assert host.of("governor.queue")[-1]["jobs"][waiting.prompt_id]["eta_s"] == 65.0
    host.events.clear()
    for _ in range(5):
        clock.advance(5)
        gov.tick()
    assert host.of("governor.queue") == []  # a client counting down agrees with the server: nothing to send
