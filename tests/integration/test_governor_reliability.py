"""Retries, timeouts, the memory gate and metrics on the real server with the fixture nodes."""

from __future__ import annotations

import uuid

import psutil
from harness.client import ComfyClient, history_outcome
from harness.governor import job, wait_job
from harness.graphs import Graph, fail_prompt, sleep_prompt
from prometheus_client.parser import text_string_to_metric_families


async def metrics(c: ComfyClient) -> dict[tuple[str, tuple], float]:
    r = (await c.get("/governor/metrics")).ok()
    out = {}
    for family in text_string_to_metric_families(r.body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_an_oom_that_happens_once_is_retried_and_succeeds(gov_client: ComfyClient):
    c = gov_client
    before = await metrics(c)
    stream = await c.events()
    pid = await c.queue_prompt(fail_prompt(uuid.uuid4().hex, failures=1, error="oom"))
    entry = await c.wait_history(pid, 60)
    assert history_outcome(entry) == "success"
    final = await wait_job(c, pid, "success")
    assert final["attempts"] == 2
    assert final["errors"][0]["reason"] == "oom" and "out of memory" in final["errors"][0]["message"]
    assert [m for m in stream.of_type("governor.job", pid) if m.data["event"] == "retry"]
    # A plain ComfyUI client sees one prompt that ends once, successfully: the retried attempt's
    # execution_error and executing(null) are not sent to it.
    await stream.wait_for(lambda m: m.type == "executing" and m.data.get("prompt_id") == pid
                          and m.data.get("node") is None, 10)
    assert stream.of_type("execution_error", pid) == []
    assert len(stream.of_type("execution_start", pid)) == 2
    assert len([m for m in stream.of_type("executing", pid) if m.data.get("node") is None]) == 1
    after = await metrics(c)
    assert value(after, "governor_retries_total", failure_class="oom") == \
        value(before, "governor_retries_total", failure_class="oom") + 1


async def test_a_prompt_that_always_fails_ends_failed_after_the_configured_attempts(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"retry_attempts": 1})).ok()
    pid = await c.queue_prompt(fail_prompt(uuid.uuid4().hex, failures=99, error="oom"))
    entry = await c.wait_history(pid, 60)
    assert history_outcome(entry) == "error"
    final = await wait_job(c, pid, "failed")
    assert final["attempts"] == 2 and final["reason"] == "oom"
    assert [e["attempt"] for e in final["errors"]] == [1, 2]
    assert entry["governor"]["attempts"] == 2
    # the short type name (ComfyUI says torch.OutOfMemoryError) in the record, the history and the event
    assert [e["exception_type"] for e in final["errors"]] == ["OutOfMemoryError"] * 2
    error = next(data for kind, data in entry["status"]["messages"] if kind == "execution_error")
    assert error["exception_type"] == "OutOfMemoryError"


async def test_ordinary_node_errors_are_not_retried(gov_client: ComfyClient):
    c = gov_client
    pid = await c.queue_prompt(fail_prompt(uuid.uuid4().hex, failures=1, error="value"))
    await c.wait_history(pid, 60)
    final = await wait_job(c, pid, "failed")
    assert final["attempts"] == 1 and final["reason"] == "error"


async def test_a_prompt_interrupted_by_the_user_is_not_retried(gov_client: ComfyClient):
    c = gov_client
    pid = await c.queue_prompt(sleep_prompt(20, "interrupt-me", steps=200))
    await wait_job(c, pid, "running")
    await c.post("/interrupt", {"prompt_id": pid})  # ComfyUI's own cancel button
    entry = await c.wait_history(pid, 30)
    assert history_outcome(entry) == "interrupted"
    final = await wait_job(c, pid, "cancelled")
    assert final["attempts"] == 1 and final["reason"] == "interrupted"


async def test_a_queue_timeout_expires_a_held_prompt_and_history_shows_it(gov_client: ComfyClient):
    c = gov_client
    stream = await c.events()
    blocker = await c.queue_prompt(sleep_prompt(30.0, "blocker", steps=300))  # holds the only slot
    await wait_job(c, blocker, "running")
    pid = await c.queue_prompt(sleep_prompt(0.01), headers={"X-Queue-Timeout": "1"})
    entry = await c.wait_history(pid, 20)
    assert entry["status"]["status_str"] == "error"
    assert entry["governor"]["reason"] == "queue_timeout"
    message = entry["status"]["messages"][0][1]["exception_message"]
    assert "Queue timeout" in message and "X-Priority: low" in message  # says what to change
    assert (await job(c, pid))["state"] == "failed"
    await stream.wait_for(lambda m: m.type == "executing" and m.data.get("prompt_id") == pid
                          and m.data.get("node") is None, 5)  # plain ComfyUI clients stop waiting
    failed = [m for m in stream.of_type("governor.job", pid) if m.data["state"] == "failed"]
    assert failed and failed[-1].data["reason"] == "queue_timeout"
    (await c.post(f"/governor/jobs/{blocker}/cancel")).ok()


async def test_an_execution_timeout_interrupts_a_sleeping_node(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"exec_timeout": 1.0})).ok()
    pid = await c.queue_prompt(sleep_prompt(30, "slow", steps=300))
    entry = await c.wait_history(pid, 30)
    assert history_outcome(entry) == "interrupted"
    final = await wait_job(c, pid, "failed")
    assert final["reason"] == "exec_timeout" and final["attempts"] == 1
    assert final["exec_seconds"] < 10


async def test_a_node_that_ignores_the_interrupt_is_marked_stuck(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"exec_timeout": 0.5, "exec_timeout_grace": 0.5})).ok()
    g = Graph()
    g.node("RGTestIgnoreInterrupt", seconds=4.0)
    pid = await c.queue_prompt(g.prompt())
    stuck = await wait_job(c, pid, "stuck", timeout=10)
    assert stuck["state"] == "stuck"
    m = await metrics(c)
    assert value(m, "governor_stuck_jobs") == 1
    status = (await c.get("/governor/status")).ok().body
    assert status["running"][0]["state"] == "stuck"
    # The node never checks the interrupt, so it finishes its work: the result is kept.
    entry = await c.wait_history(pid, 30)
    assert history_outcome(entry) == "success"


async def test_the_memory_gate_holds_jobs_on_cpu_until_the_threshold_is_raised(gov_client: ComfyClient):
    c = gov_client
    used = psutil.virtual_memory()
    fraction = (used.total - used.available) / used.total
    (await c.patch("/governor/config", {"max_used_fraction": max(0.01, fraction / 3)})).ok()
    pid = await c.queue_prompt(sleep_prompt(0.05, "gated"))
    waiting = await wait_job(c, pid, "waiting_for_memory", timeout=10)
    assert waiting["position"] == 1
    status = (await c.get("/governor/status")).ok().body
    assert status["gate"]["open"] is False and status["memory"]["source"] == "system"
    m = await metrics(c)
    assert value(m, "governor_gate_open") == 0
    (await c.patch("/governor/config", {"max_used_fraction": 0.99})).ok()
    entry = await c.wait_history(pid, 20)
    assert history_outcome(entry) == "success"


async def test_metrics_parse_and_move(gov_client: ComfyClient):
    c = gov_client
    before = await metrics(c)
    await c.run(sleep_prompt(0.01, "metered"))
    (await c.post("/governor/pause")).ok()
    await c.queue_prompt(sleep_prompt(0.01), headers={"X-Priority": "low"})
    (await c.patch("/governor/config", {"max_pending": 1})).ok()
    assert (await c.submit(sleep_prompt(0.01))).status == 429
    after = await metrics(c)
    assert value(after, "governor_admissions_total", priority="normal") >= \
        value(before, "governor_admissions_total", priority="normal") + 1
    assert value(after, "governor_rejections_total", reason="max_pending") == \
        value(before, "governor_rejections_total", reason="max_pending") + 1
    assert value(after, "governor_jobs_finished_total", outcome="success", reason="") > \
        value(before, "governor_jobs_finished_total", outcome="success", reason="")
    assert value(after, "governor_queue_jobs", state="pending", priority="low") == 1
    assert value(after, "governor_dispatch_state", state="paused") == 1
    assert value(after, "governor_execution_seconds_count", outcome="success") > \
        value(before, "governor_execution_seconds_count", outcome="success")
    assert value(after, "governor_memory_total_bytes", source="system") > 0
    assert value(after, "governor_leases_limit") == 1
