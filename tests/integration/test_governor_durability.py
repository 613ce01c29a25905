"""The durable queue across a kill -9, and two servers sharing one GPU's concurrency slots."""

from __future__ import annotations

import asyncio
import sqlite3

from harness.client import ComfyClient, history_outcome
from harness.governor import run_interval, run_order, wait_all_history, wait_job
from harness.graphs import sleep_prompt


async def test_kill_9_with_50_pending_and_one_running_loses_nothing_and_keeps_order(comfy_server_factory):
    server = comfy_server_factory("durable")
    async with ComfyClient(server.url) as c:
        (await c.patch("/governor/config", {"retry_backoff": 0.1, "retry_jitter": 0})).ok()
        running = await c.queue_prompt(sleep_prompt(4.0, "running", steps=40), client_id="client-0",
                                       extra_data={"api_key_comfy_org": "do-not-store-me"})
        await wait_job(c, running, "running")
        pending = []
        for i in range(50):
            pending.append(await c.queue_prompt(sleep_prompt(0.02, f"p{i}", steps=1), client_id=f"client-{i % 4}"))
        expected = await c.pending_ids_in_number_order()
        assert sorted(expected) == sorted(pending)
    queue_db = next((server.user_dir / "restoration-governor").glob("queue-*.sqlite3"))
    server.kill()
    raw = "".join(str(row) for row in sqlite3.connect(queue_db).execute("SELECT * FROM jobs"))
    assert "do-not-store-me" not in raw and raw.count("client-") >= 51

    server.start()
    async with ComfyClient(server.url) as c:
        entries = await wait_all_history(c, [running, *pending], timeout=120)
        assert all(history_outcome(e) == "success" for e in entries.values())
        assert run_order(entries) == [running, *expected]
        rerun = (await c.get(f"/governor/jobs/{running}")).ok().body
        assert rerun["attempts"] == 2 and rerun["errors"][0]["reason"] == "server_restart"


async def test_two_servers_sharing_a_state_dir_respect_max_concurrent(comfy_server_factory, tmp_path):
    shared = {"GOVERNOR_STATE_DIR": str(tmp_path / "shared-state")}
    a = comfy_server_factory("gpu-a", env=shared)
    b = comfy_server_factory("gpu-b", env=shared)
    async with ComfyClient(a.url) as ca, ComfyClient(b.url) as cb:
        async def batch(tag: str) -> tuple[list[str], list[str]]:
            ids_a = [await ca.queue_prompt(sleep_prompt(0.6, f"{tag}a{i}", steps=6)) for i in range(3)]
            ids_b = [await cb.queue_prompt(sleep_prompt(0.6, f"{tag}b{i}", steps=6)) for i in range(3)]
            return ids_a, ids_b

        ids_a, ids_b = await batch("one")
        done_a, done_b = await asyncio.gather(wait_all_history(ca, ids_a), wait_all_history(cb, ids_b))
        intervals = sorted(run_interval(e) for e in [*done_a.values(), *done_b.values()])
        overlaps = sum(1 for x, y in zip(intervals, intervals[1:], strict=False) if y[0] < x[1])
        assert overlaps == 0, f"max_concurrent=1 across both servers, yet runs overlapped: {intervals}"

        (await ca.patch("/governor/config", {"max_concurrent": 2})).ok()  # shared file: b reloads it
        for _ in range(50):
            if (await cb.get("/governor/config")).body["config"]["max_concurrent"] == 2:
                break
            await asyncio.sleep(0.1)
        ids_a, ids_b = await batch("two")
        done_a, done_b = await asyncio.gather(wait_all_history(ca, ids_a), wait_all_history(cb, ids_b))
        intervals = sorted(run_interval(e) for e in [*done_a.values(), *done_b.values()])
        overlaps = sum(1 for x, y in zip(intervals, intervals[1:], strict=False) if y[0] < x[1])
        assert overlaps >= 1, f"with max_concurrent=2 the two servers should run side by side: {intervals}"

        # A lease holder that dies (kill -9) frees its slot: the other server's prompt starts.
        (await ca.patch("/governor/config", {"max_concurrent": 1})).ok()
        for _ in range(50):
            if (await cb.get("/governor/config")).body["config"]["max_concurrent"] == 1:
                break
            await asyncio.sleep(0.1)
        holder = await ca.queue_prompt(sleep_prompt(60, "holder", steps=600))
        await wait_job(ca, holder, "running")
        waiter = await cb.queue_prompt(sleep_prompt(0.1, "waiter"))
        await asyncio.sleep(1.0)
        assert (await cb.get(f"/governor/jobs/{waiter}")).body["state"] == "pending"
        status = (await cb.get("/governor/status")).body
        assert status["concurrency"]["in_use"] == 1 and status["concurrency"]["holders"][0]["prompt_id"] == holder
        a.kill()
        entry = await cb.wait_history(waiter, 20)
        assert history_outcome(entry) == "success"
