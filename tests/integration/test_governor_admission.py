"""Admission on POST /prompt: priorities, fairness, caps, idempotency, errors (real ComfyUI)."""

from __future__ import annotations

import asyncio
import uuid

from harness.client import ComfyClient
from harness.governor import job, run_order, wait_all_history, wait_job
from harness.graphs import sleep_prompt


async def test_response_keeps_comfyui_fields_and_adds_governor_info(gov_client: ComfyClient):
    r = (await gov_client.submit(sleep_prompt(0.05), path="/api/prompt")).ok()
    assert {"prompt_id", "number", "node_errors"} <= set(r.body)
    info = r.body["governor"]
    assert info["priority"] == "normal" and isinstance(info["position"], int) and "eta_s" in info


async def test_priority_tiers_then_fifo(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    plan = ["normal", "low", "high", "normal", "high", "low", "normal"]
    ids = []
    for i, priority in enumerate(plan):
        # one client for every prompt, so inside a tier the order is plain FIFO
        r = (await c.submit(sleep_prompt(0.05, f"p{i}"), headers={"X-Priority": priority})).ok()
        ids.append(r.body["prompt_id"])
    pending_by_number = await c.pending_ids_in_number_order()
    by_tier = [ids[i] for p in ("high", "normal", "low") for i, q in enumerate(plan) if q == p]
    assert pending_by_number == by_tier, "sorting /queue by number shows the order the governor will run"
    (await c.post("/governor/resume")).ok()
    entries = await wait_all_history(c, ids)
    assert run_order(entries) == by_tier


async def test_priority_from_extra_data_and_unknown_values(gov_client: ComfyClient):
    c = gov_client
    r = (await c.submit(sleep_prompt(0.01), extra_data={"governor": {"priority": "low"}})).ok()
    assert r.body["governor"]["priority"] == "low"
    bad = await c.submit(sleep_prompt(0.01), headers={"X-Priority": "urgent"})
    assert bad.status == 400 and bad.body["error"]["type"] == "invalid_priority"
    assert bad.body["node_errors"] == {}


async def test_fair_share_between_clients(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    submitted = {"A": [], "B": [], "C": []}
    for client, n in (("A", 20), ("B", 2), ("C", 3)):
        for i in range(n):
            pid = await c.queue_prompt(sleep_prompt(0.02, f"{client}{i}", steps=1), client_id=f"fair-{client}")
            submitted[client].append(pid)
    (await c.post("/governor/resume")).ok()
    entries = await wait_all_history(c, [p for ids in submitted.values() for p in ids])
    order = run_order(entries)
    fourth_a = order.index(submitted["A"][3])
    assert all(order.index(p) < fourth_a for p in submitted["B"] + submitted["C"])
    assert [order.index(p) for p in submitted["A"]] == sorted(order.index(p) for p in submitted["A"]), "FIFO per client"


async def test_a_burst_over_the_cap_gets_exactly_the_overflow_as_429(gov_client: ComfyClient):
    c = gov_client
    cap, extra = 5, 3
    (await c.patch("/governor/config", {"max_pending": cap})).ok()
    holder = await c.queue_prompt(sleep_prompt(3.0, "holder", steps=30))
    await wait_job(c, holder, "running")
    results = await asyncio.gather(*[c.submit(sleep_prompt(0.01, f"b{i}")) for i in range(cap + extra)])
    statuses = sorted(r.status for r in results)
    assert statuses == [200] * cap + [429] * extra
    rejected = [r for r in results if r.status == 429]
    for r in rejected:
        assert int(r.headers["Retry-After"]) >= 1
        assert r.body["error"]["type"] == "queue_full" and r.body["error"]["extra_info"]["cap"] == "max_pending"
        assert "max_pending" in r.body["error"]["message"]


async def test_per_client_cap(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"max_pending_per_client": 2})).ok()
    (await c.post("/governor/pause")).ok()
    assert [(await c.submit(sleep_prompt(0.01), client_id="greedy")).status for _ in range(3)] == [200, 200, 429]
    assert (await c.submit(sleep_prompt(0.01), client_id="polite")).status == 200


async def test_concurrent_repeats_with_one_idempotency_key_make_one_job(gov_client: ComfyClient):
    c = gov_client
    key = uuid.uuid4().hex
    results = await asyncio.gather(*[c.submit(sleep_prompt(0.05, "idem"), headers={"Idempotency-Key": key})
                                     for _ in range(10)])
    assert [r.status for r in results] == [200] * 10
    assert len({r.body["prompt_id"] for r in results}) == 1
    assert sum(1 for r in results if r.headers.get("Idempotent-Replayed") == "true") == 9
    mine = (await c.get(f"/governor/jobs?client_id={c.client_id}")).ok().body
    assert mine["total"] == 1
    via_extra = await c.submit(sleep_prompt(0.05, "idem"), extra_data={"governor": {"idempotency_key": key}})
    assert via_extra.body["prompt_id"] == results[0].body["prompt_id"]


async def test_batch_count_duplicates_are_allowed_unless_the_guard_is_on(gov_client: ComfyClient):
    c = gov_client
    prompt = sleep_prompt(0.01, "same")
    assert [(await c.submit(prompt)).status for _ in range(3)] == [200, 200, 200]
    (await c.patch("/governor/config", {"duplicate_window": 30})).ok()
    first = (await c.submit(prompt)).ok()
    again = await c.submit(prompt)
    assert again.status == 409 and again.body["error"]["type"] == "duplicate_prompt"
    assert again.body["error"]["extra_info"]["prompt_id"] == first.body["prompt_id"]


async def test_queue_timeout_header_can_only_shorten(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    short = (await c.submit(sleep_prompt(0.01), headers={"X-Queue-Timeout": "12"})).ok()
    long = (await c.submit(sleep_prompt(0.01), headers={"X-Queue-Timeout": "9999"})).ok()
    assert (await job(c, short.body["prompt_id"]))["queue_timeout"] == 12
    assert (await job(c, long.body["prompt_id"]))["queue_timeout"] == 300
    assert any("shortened" in n for n in long.body["governor"]["notes"])
    bad = await c.submit(sleep_prompt(0.01), headers={"X-Queue-Timeout": "-3"})
    assert bad.status == 400 and bad.body["error"]["type"] == "invalid_queue_timeout"


async def test_queue_front_from_the_graph_editor_is_high_for_admins(gov_client: ComfyClient):
    c = gov_client
    r = (await c.submit(sleep_prompt(0.01), front=True)).ok()  # loopback and no token: admin
    assert r.body["governor"]["priority"] == "high"


async def test_malformed_requests_get_comfyui_error_json_and_the_worker_survives(gov_client: ComfyClient):
    c = gov_client
    cases = [
        await c.request("POST", "/prompt", data=b"{not json", headers={"Content-Type": "application/json"}),
        await c.post("/prompt", ["a", "list"]),
        await c.post("/prompt", {"prompt": [1, 2, 3]}),
        await c.post("/prompt", {"prompt": {"1": {"class_type": "RGTestSleep", "inputs": {}}}, "client_id": 7}),
        await c.post("/prompt", {"prompt": sleep_prompt(0.01), "extra_data": "nope"}),
        await c.post("/prompt", {"prompt": sleep_prompt(0.01), "prompt_id": "../../etc/passwd"}),
        await c.post("/prompt", {"prompt": sleep_prompt(0.01), "number": "abc"}),  # core's float() would 500
        await c.post("/prompt", {"prompt": sleep_prompt(0.01), "number": [1]}),
        await c.post("/prompt", {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}),
        await c.get("/governor/jobs?state=bogus"),
        await c.get("/governor/jobs?limit=-1"),
        await c.post("/governor/jobs/whatever/priority", {"priority": "top"}),
        await c.patch("/governor/config", {"max_pending": "lots", "no_such_setting": 1}),
    ]
    for r in cases:
        assert r.status == 400, r.body
        assert set(r.body["error"]) == {"type", "message", "details", "extra_info"}, r.body
        assert "node_errors" in r.body
    missing = await c.get("/governor/jobs/no-such-job")
    assert missing.status == 404 and missing.body["error"]["type"] == "not_found"
    (await c.patch("/governor/config", {"max_prompt_bytes": 2048})).ok()
    huge = await c.post("/prompt", {"prompt": sleep_prompt(0.01, "x" * 5000)})
    assert huge.status == 413 and huge.body["error"]["type"] == "request_too_large"
    (await c.patch("/governor/config", {"max_prompt_bytes": 16 << 20})).ok()
    entry = await c.run(sleep_prompt(0.01, "still alive"))
    assert entry["status"]["status_str"] == "success"


async def test_a_reused_prompt_id_is_refused_while_it_is_queued(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    pid = str(uuid.uuid4())
    (await c.submit(sleep_prompt(0.01), prompt_id=pid)).ok()
    again = await c.submit(sleep_prompt(0.01), prompt_id=pid)
    assert again.status == 409 and again.body["error"]["type"] == "prompt_id_in_use"


async def test_deeply_nested_json_is_a_400_in_the_error_shape_not_a_500(gov_client: ComfyClient):
    c = gov_client
    depth = 100_000
    body = b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}"
    r = await c.request("POST", "/prompt", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.body["error"]["type"] == "invalid_json" and r.body["node_errors"] == {}
    assert "256 levels" in r.body["error"]["details"]
    entry = await c.run(sleep_prompt(0.01, "after-nesting"))
    assert entry["status"]["status_str"] == "success"


async def test_an_idempotency_key_reused_with_another_body_is_refused_with_422(gov_client: ComfyClient):
    c = gov_client
    key = uuid.uuid4().hex
    first = (await c.submit(sleep_prompt(0.01, "idem-a"), headers={"Idempotency-Key": key})).ok()
    other = await c.submit(sleep_prompt(0.01, "idem-b"), headers={"Idempotency-Key": key})
    assert other.status == 422 and other.body["error"]["type"] == "idempotency_key_reused"
    assert other.body["error"]["extra_info"]["prompt_id"] == first.body["prompt_id"]
    same = (await c.submit(sleep_prompt(0.01, "idem-a"), headers={"Idempotency-Key": key})).ok()
    assert same.body["prompt_id"] == first.body["prompt_id"] and same.headers.get("Idempotent-Replayed") == "true"
    lower = await c.submit(sleep_prompt(0.01, "idem-a"), headers={"Idempotency-Key": key, "X-Priority": "low"})
    assert lower.status == 422 and lower.body["error"]["type"] == "idempotency_key_reused"  # not a silent replay


async def test_low_priority_has_no_queue_timeout_and_a_doomed_admission_is_warned(gov_client: ComfyClient):
    c = gov_client
    low = (await c.submit(sleep_prompt(0.01, "batch"), headers={"X-Priority": "low"})).ok().body["governor"]
    normal = (await c.submit(sleep_prompt(0.01, "ui"))).ok().body["governor"]
    assert low["queue_timeout_s"] is None and normal["queue_timeout_s"] == 300.0
    await c.run(sleep_prompt(1.5, "slow", steps=15))  # the governor learns this workflow takes ~1.5 s
    (await c.patch("/governor/config", {"queue_timeout": 2})).ok()
    answers = [(await c.submit(sleep_prompt(1.5, "slow", steps=15))).ok().body for _ in range(3)]
    infos = [a["governor"] for a in answers]
    assert infos[2]["eta_s"] > 2 and 0 < infos[2]["times_out_in_s"] <= 2
    note = " ".join(infos[2].get("notes", []))
    assert "expected to start in about" in note and "X-Priority: low" in note
    assert "notes" not in infos[0] and infos[0]["times_out_in_s"] is None
    entry = await c.wait_history(answers[2]["prompt_id"], 30)
    assert entry["governor"]["reason"] == "queue_timeout"
    assert "X-Priority: low" in entry["status"]["messages"][0][1]["exception_message"]
