"""ComfyUI's jobs API (``/api/jobs``, served by the governor on 0.3.75) against frontend 1.58's schema,
cancels through it, the core-route guard on it and client-chosen prompt ids (real ComfyUI)."""

from __future__ import annotations

import sqlite3
import uuid

from harness.client import ComfyClient, history_outcome
from harness.governor import DEFAULTS, job, wait_job
from harness.graphs import sleep_prompt
from harness.jobs_contract import execution_error_violations, job_violations, list_violations
from PIL import Image


async def _jobs(c: ComfyClient, query: str = "", headers: dict[str, str] | None = None) -> list[dict]:
    answer = (await c.get(f"/api/jobs{query}", headers=headers)).ok().body
    assert list_violations(answer) == []
    return answer["jobs"]


def _history_errors_valid(history: dict) -> list[str]:
    bad = []
    for pid, entry in history.items():
        assert isinstance(entry["prompt"][3].get("create_time"), int), pid
        for kind, data in entry["status"]["messages"]:
            if kind == "execution_error":
                bad += execution_error_violations(data, pid)
    return bad


async def test_jobs_api_shows_the_governed_queue_in_run_order_and_stays_valid_after_unstarted_failures(
        gov_client: ComfyClient):
    c = gov_client
    blocker = await c.queue_prompt(sleep_prompt(30.0, "blocker", steps=300))
    await wait_job(c, blocker, "running")
    low = await c.queue_prompt(sleep_prompt(0.01, "low"), headers={"X-Priority": "low"})
    normal = await c.queue_prompt(sleep_prompt(0.01, "normal"))
    high = await c.queue_prompt(sleep_prompt(0.01, "high"), headers={"X-Priority": "high"})  # loopback: admin
    queued = await _jobs(c, "?status=in_progress,pending")
    assert [(j["id"], j["status"]) for j in queued] == [
        (blocker, "in_progress"), (high, "pending"), (normal, "pending"), (low, "pending")]
    numbers = {item[1]: item[0] for item in (await c.queue())["queue_pending"]}
    assert [j["priority"] for j in queued[1:]] == [numbers[high], numbers[normal], numbers[low]]
    assert queued[1]["priority"] < queued[2]["priority"] < queued[3]["priority"]

    timed = await c.queue_prompt(sleep_prompt(0.01, "timed"), headers={"X-Queue-Timeout": "0.5"})
    assert (await wait_job(c, timed, "failed"))["reason"] == "queue_timeout"
    (await c.post(f"/api/jobs/{low}/cancel")).ok()  # the stock Job Queue's cancel, pending
    assert ((await job(c, low))["state"], (await job(c, low))["reason"]) == ("cancelled", "cancelled")
    (await c.patch("/governor/config", {"max_used_fraction": 0.01, "max_gate_wait": 0.3,
                                        "gate_timeout_action": "fail"})).ok()
    (await c.post(f"/api/jobs/{blocker}/cancel")).ok()  # running: a governor cancel, never retried
    stopped = await wait_job(c, blocker, "cancelled")
    assert (stopped["reason"], stopped["attempts"]) == ("cancelled", 1)
    for pid in (high, normal):
        assert (await wait_job(c, pid, "failed"))["reason"] == "memory_gate_timeout"

    history = (await c.get("/history")).ok().body
    assert _history_errors_valid(history) == []
    finished = {j["id"]: j for j in await _jobs(c, "?status=completed,failed,cancelled")}
    assert {pid: finished[pid]["status"] for pid in (blocker, timed, high, normal)} == {
        blocker: "cancelled", timed: "failed", high: "failed", normal: "failed"}
    assert low not in finished  # a removed pending prompt leaves no history, as in ComfyUI
    detail = (await c.get(f"/api/jobs/{timed}")).ok().body
    assert job_violations(detail, detail=True) == []
    assert detail["execution_error"]["exception_type"] == "queue_timeout"  # the short name, as in /history
    assert (await c.get(f"/api/jobs/{uuid.uuid4()}")).status == 404


async def test_a_client_chosen_prompt_id_of_any_known_job_is_409(gov_client: ComfyClient):
    c = gov_client
    done_id, waiting_id = str(uuid.uuid4()), str(uuid.uuid4())
    assert history_outcome(await c.run(sleep_prompt(0.01, "done"), prompt_id=done_id)) == "success"
    (await c.post("/governor/pause")).ok()
    await c.queue_prompt(sleep_prompt(0.01, "waiting"), prompt_id=waiting_id)
    for reused in (done_id, waiting_id):
        again = await c.submit(sleep_prompt(0.01, "again"), prompt_id=reused)
        assert again.status == 409 and again.body["error"]["type"] == "prompt_id_in_use", again.body
    bad = await c.submit(sleep_prompt(0.01, "bad"), prompt_id="has spaces")
    assert bad.status == 400 and bad.body["error"]["type"] == "invalid_prompt_id"
    assert [j["id"] for j in await _jobs(c, "?status=pending")] == [waiting_id]


async def test_with_a_token_the_jobs_cancel_routes_need_admin_or_ownership(gov_client: ComfyClient):
    c = gov_client
    token = "jobs-routes-token"
    auth = {"Authorization": f"Bearer {token}"}
    me, other = {"X-Client-Id": c.client_id}, {"X-Client-Id": "someone-else"}
    (await c.patch("/governor/config", {"admin_token": token})).ok()
    try:
        (await c.post("/governor/pause", headers=auth)).ok()
        mine = [await c.queue_prompt(sleep_prompt(0.01, f"mine{i}")) for i in range(3)]
        refused = await c.post(f"/api/jobs/{mine[0]}/cancel", headers=other)
        assert refused.status == 403 and refused.body["error"]["type"] == "forbidden"
        batch = await c.post("/api/jobs/cancel", {"job_ids": [mine[1]]}, headers=other)
        assert batch.status == 403
        assert (await c.post("/api/jobs/cancel", {"job_ids": ["not-a-uuid"]}, headers=me)).status == 400
        theirs = (await c.get(f"/api/jobs/{mine[0]}", headers=other)).ok().body
        assert theirs["workflow"] == {"prompt": {}, "extra_data": {}} and job_violations(theirs, detail=True) == []
        assert (await c.get(f"/api/jobs/{mine[0]}", headers=me)).ok().body["workflow"]["prompt"]
        (await c.post(f"/api/jobs/{mine[0]}/cancel", headers=me)).ok()  # its owner may
        (await c.post("/api/jobs/cancel", {"job_ids": [mine[1]]}, headers=auth)).ok()  # an admin may
        assert [(await job(c, p, auth))["reason"] for p in mine[:2]] == ["cancelled", "cancelled"]
        (await c.patch("/governor/config", {"guard_core_routes": "off"}, headers=auth)).ok()
        (await c.post(f"/api/jobs/{mine[2]}/cancel", headers=other)).ok()  # off: as in ComfyUI
        assert (await job(c, mine[2], auth))["state"] == "cancelled"
    finally:
        (await c.patch("/governor/config", {**DEFAULTS, "admin_token": None}, headers=auth)).ok()
        (await c.post("/governor/resume")).ok()


async def test_after_a_restart_jobs_from_an_older_store_and_invalid_prompts_stay_contract_valid(
        comfy_server_factory):
    server = comfy_server_factory("jobs-restart")
    Image.new("RGB", (8, 8)).save(server.input_dir / "rg-vanishing.png")
    loads = {"1": {"class_type": "LoadImage", "inputs": {"image": "rg-vanishing.png"}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    async with ComfyClient(server.url) as c:
        (await c.post("/governor/pause")).ok()
        gone = await c.queue_prompt(loads)
        kept = await c.queue_prompt(sleep_prompt(0.01, "kept"))
    server.stop()
    (server.input_dir / "rg-vanishing.png").unlink()
    queue_db = next((server.user_dir / "restoration-governor").glob("queue-*.sqlite3"))
    with sqlite3.connect(queue_db) as db:  # an older store: no create_time in extra_data
        db.execute("UPDATE jobs SET extra_data = json_remove(extra_data, '$.create_time')")
        created = dict(db.execute("SELECT prompt_id, created_at FROM jobs"))
    server.start()
    async with ComfyClient(server.url) as c:
        assert (await wait_job(c, gone, "failed"))["reason"] == "invalid_on_restore"
        jobs = {j["id"]: j for j in await _jobs(c)}
        assert (jobs[gone]["status"], jobs[kept]["status"]) == ("failed", "pending")
        assert jobs[kept]["create_time"] == int(created[kept] * 1000)
        assert _history_errors_valid((await c.get("/history")).ok().body) == []
        (await c.post("/governor/resume")).ok()
        assert history_outcome(await c.wait_history(kept, 60)) == "success"
        assert (await c.get(f"/api/jobs/{kept}")).ok().body["status"] == "completed"


async def test_in_multi_user_mode_a_comfy_user_owns_its_jobs_across_browser_tabs(comfy_server_factory):
    server = comfy_server_factory("multi-user", extra_args=["--multi-user"], env={"GOVERNOR_ADMIN_TOKEN": "t"})
    alice, bob = {"Comfy-User": "alice"}, {"Comfy-User": "bob"}
    async with ComfyClient(server.url) as c:
        (await c.post("/governor/pause", headers={"X-Governor-Token": "t"})).ok()
        first = await c.queue_prompt(sleep_prompt(0.01, "tab-1"), client_id="tab-1", headers=alice)
        second = await c.queue_prompt(sleep_prompt(0.01, "tab-2"), client_id="tab-2", headers=alice,
                                      extra_data={"governor_comfy_user": "bob"})  # a forged owner is ignored
        refused = await c.post(f"/api/jobs/{first}/cancel", headers={**bob, "X-Client-Id": "tab-1"})
        assert refused.status == 403 and refused.body["error"]["type"] == "forbidden"
        assert (await c.post("/queue", {"delete": [second]}, headers=bob)).status == 403
        seen_by_bob = (await c.get(f"/api/jobs/{first}", headers=bob)).ok().body
        assert seen_by_bob["workflow"] == {"prompt": {}, "extra_data": {}}
        (await c.post(f"/api/jobs/{first}/cancel", headers={**alice, "X-Client-Id": "tab-3"})).ok()
        (await c.post("/api/jobs/cancel", {"job_ids": [second]}, headers=alice)).ok()
        for pid in (first, second):
            assert (await job(c, pid, {"X-Governor-Token": "t"}))["reason"] == "cancelled"
