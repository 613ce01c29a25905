"""The control API, live events, tokens and upload limits (real ComfyUI)."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib

from harness.client import ComfyClient, history_outcome
from harness.governor import DEFAULTS, job, wait_all_history, wait_job
from harness.graphs import sleep_prompt
from PIL import Image


async def test_pause_holds_and_drain_finishes_the_queue_while_refusing_new_prompts(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/api/governor/pause")).ok()
    held = [await c.queue_prompt(sleep_prompt(0.05, f"held{i}")) for i in range(3)]
    status = (await c.get("/governor/status")).ok().body
    assert status["state"] == "paused" and status["counts"]["pending"] == 3
    assert [(await job(c, p))["state"] for p in held] == ["pending"] * 3
    assert (await job(c, held[0]))["eta_s"] is None  # nothing starts while paused
    (await c.post("/governor/drain")).ok()
    refused = await c.submit(sleep_prompt(0.05))
    assert refused.status == 503 and refused.body["error"]["type"] == "governor_draining"
    assert "Retry-After" not in refused.headers  # only an admin's resume helps
    entries = await wait_all_history(c, held, 30)  # draining finishes the queue without a resume
    assert [history_outcome(entries[p]) for p in held] == ["success"] * 3
    assert (await c.get("/governor/status")).ok().body["state"] == "draining"
    (await c.post("/governor/resume")).ok()
    assert (await c.queue_prompt(sleep_prompt(0.01, "after")))


async def test_a_paused_queue_keeps_its_prompts_past_their_queue_timeout(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"queue_timeout": 2})).ok()
    (await c.post("/governor/pause")).ok()
    held = await c.queue_prompt(sleep_prompt(0.05, "held-past-timeout"))
    started = time.monotonic()
    while time.monotonic() - started < 3.5:  # well past its 2 s: the watchdog ticks every 0.2 s
        assert (await job(c, held))["state"] == "pending"
        await asyncio.sleep(0.25)
    (await c.post("/governor/resume")).ok()
    assert history_outcome(await c.wait_history(held, 30)) == "success"


async def test_cancel_pending_through_the_api_and_through_comfyui_queue_delete(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    a = await c.queue_prompt(sleep_prompt(0.05, "a"))
    b = await c.queue_prompt(sleep_prompt(0.05, "b"))
    keep = await c.queue_prompt(sleep_prompt(0.05, "keep"))
    cancelled = (await c.post(f"/governor/jobs/{a}/cancel", {"client_id": c.client_id})).ok().body
    assert cancelled["state"] == "cancelled"
    await c.post("/queue", {"delete": [b]})  # the graph editor's own delete button
    assert (await job(c, b))["state"] == "cancelled"
    assert await c.pending_ids_in_number_order() == [keep]
    (await c.post("/governor/resume")).ok()
    await c.wait_history(keep, 30)
    assert await c.history(a) is None and await c.history(b) is None


async def test_cancel_running_interrupts_and_is_not_retried(gov_client: ComfyClient):
    c = gov_client
    pid = await c.queue_prompt(sleep_prompt(20.0, "long", steps=200))
    await wait_job(c, pid, "running")
    (await c.post(f"/governor/jobs/{pid}/cancel", {"client_id": c.client_id})).ok()
    entry = await c.wait_history(pid, 30)
    assert history_outcome(entry) == "interrupted"
    final = await wait_job(c, pid, "cancelled")
    assert final["attempts"] == 1 and final["reason"] == "cancelled"
    assert entry["governor"]["state"] == "cancelled"


async def test_retry_and_priority_change_through_the_api(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    first = await c.queue_prompt(sleep_prompt(0.05, "first"))
    second = await c.queue_prompt(sleep_prompt(0.05, "second"), headers={"X-Priority": "low"})
    (await c.post(f"/governor/jobs/{second}/priority", {"priority": "high", "client_id": c.client_id})).ok()
    assert await c.pending_ids_in_number_order() == [second, first]
    (await c.post(f"/governor/jobs/{first}/cancel")).ok()
    retried = (await c.post(f"/governor/jobs/{first}/retry", {"client_id": c.client_id})).ok().body
    assert retried["state"] == "pending" and retried["attempts"] == 0
    (await c.post("/governor/resume")).ok()
    entries = await wait_all_history(c, [first, second])
    assert all(history_outcome(e) == "success" for e in entries.values())
    bad = await c.post(f"/governor/jobs/{first}/retry")
    assert bad.status == 409


async def test_jobs_listing_and_status(gov_client: ComfyClient):
    c = gov_client
    (await c.post("/governor/pause")).ok()
    ids = [await c.queue_prompt(sleep_prompt(0.05, f"j{i}")) for i in range(3)]
    listed = (await c.get(f"/governor/jobs?client_id={c.client_id}&state=pending")).ok().body
    assert [j["prompt_id"] for j in listed["jobs"]] == ids
    assert [j["position"] for j in listed["jobs"]] == [1, 2, 3]
    one = await job(c, ids[1])
    for key in ("state", "position", "priority", "attempts", "queued_at", "started_at", "finished_at", "eta_s",
                "last_error"):
        assert key in one
    status = (await c.get("/api/governor/status")).ok().body
    for key in ("state", "counts", "running", "config", "version", "memory", "gate", "concurrency"):
        assert key in status
    assert status["counts"]["pending_by_priority"]["normal"] == 3
    assert status["can_admin"] is True
    assert "admin_token" not in status["config"]


async def test_events_tell_a_client_its_position_and_state_changes(gov_client: ComfyClient):
    c = gov_client
    stream = await c.events()
    (await c.post("/governor/pause")).ok()
    ids = [await c.queue_prompt(sleep_prompt(0.3, f"e{i}", steps=3)) for i in range(3)]
    update = await stream.wait_for(lambda m: m.type == "governor.queue" and ids[2] in m.data["jobs"], 10)
    assert update.data["jobs"][ids[2]]["position"] == 3 and update.data["pending"] == 3
    (await c.post("/governor/resume")).ok()
    moved = await stream.wait_for(lambda m: m.type == "governor.queue"
                                  and m.data["jobs"].get(ids[2], {}).get("position") == 1, 20)
    assert moved.data["jobs"][ids[2]]["position"] == 1
    done = await stream.wait_for(lambda m: m.type == "governor.job" and m.data["prompt_id"] == ids[2]
                                 and m.data["state"] == "success", 20)
    assert done.data["attempt"] == 1
    started = [m for m in stream.of_type("governor.job", ids[0]) if m.data["state"] == "running"]
    assert started


async def test_admin_token(gov_client: ComfyClient):
    c = gov_client
    token = "s3cret-token"
    (await c.patch("/governor/config", {"admin_token": token})).ok()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        config = (await c.get("/governor/config")).ok().body["config"]
        assert config["admin_token_set"] is True and token not in str(config)
        assert (await c.post("/governor/pause")).status == 401
        assert (await c.post("/governor/pause", headers={"Authorization": "Bearer nope"})).status == 401
        assert (await c.patch("/governor/config", {"max_pending": 1})).status == 401
        (await c.post("/governor/pause", headers=auth)).ok()
        (await c.post("/governor/resume", headers={"X-Governor-Token": token})).ok()
        high = await c.submit(sleep_prompt(0.01), headers={"X-Priority": "high"})
        assert high.status == 403 and high.body["error"]["type"] == "forbidden"
        assert (await c.submit(sleep_prompt(0.01), headers={"X-Priority": "high", **auth})).ok()
        front = (await c.submit(sleep_prompt(0.01), front=True)).ok()  # the graph editor is never refused
        assert front.body["governor"]["priority"] == "normal" and front.body["governor"]["notes"]
        (await c.post("/governor/pause", headers=auth)).ok()
        mine = await c.queue_prompt(sleep_prompt(0.01))
        assert (await c.post(f"/governor/jobs/{mine}/cancel", {"client_id": "not-me"})).status == 403
        assert (await c.post(f"/governor/jobs/{mine}/cancel", {"client_id": c.client_id})).ok()
        status = (await c.get("/governor/status")).ok().body
        assert status["can_admin"] is False
    finally:
        (await c.patch("/governor/config", {**DEFAULTS, "admin_token": None}, headers=auth)).ok()
        (await c.post("/governor/resume")).ok()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(buf, "PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: the shape of a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


async def _upload(c: ComfyClient, data: bytes, name: str, path: str = "/upload/image"):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    form.add_field("overwrite", "true")
    return await c.request("POST", path, data=form)


async def test_upload_limits(gov_client: ComfyClient, comfy_server):
    c = gov_client
    ok = await _upload(c, _png(64, 48), "fine.png")
    assert ok.status == 200 and (comfy_server.input_dir / "fine.png").exists()
    not_image = await _upload(c, b"#!/bin/sh\necho hi\n", "evil.png")
    assert not_image.status == 400 and not_image.body["error"]["type"] == "upload_not_an_image"
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    refused = await _upload(c, gif.getvalue(), "anim.png", "/api/upload/image")
    assert refused.status == 400 and refused.body["error"]["type"] == "upload_format_not_allowed"
    bomb = await _upload(c, _png_header_only(60000, 60000), "bomb.png", "/upload/mask")
    assert bomb.status == 400 and bomb.body["error"]["type"] == "upload_too_many_pixels"
    (await c.patch("/governor/config", {"upload_max_bytes": 2000})).ok()
    big = await _upload(c, _png(256, 256) + b"\0" * 5000, "big.png")
    assert big.status == 413 and big.body["error"]["type"] == "upload_too_large"
    assert not (comfy_server.input_dir / "evil.png").exists()
    assert not (comfy_server.input_dir / "bomb.png").exists()


async def test_with_a_token_core_queue_routes_need_admin_or_ownership(gov_client: ComfyClient):
    c = gov_client
    token = "core-routes-token"
    auth = {"Authorization": f"Bearer {token}"}
    me, other = {"X-Client-Id": c.client_id}, {"X-Client-Id": "someone-else"}
    (await c.patch("/governor/config", {"admin_token": token})).ok()
    try:
        (await c.post("/governor/pause", headers=auth)).ok()
        mine = [await c.queue_prompt(sleep_prompt(0.01, f"mine{i}")) for i in range(3)]
        for path, body in [("/queue", {"clear": True}), ("/api/queue", {"clear": True}),
                           ("/history", {"clear": True}), ("/queue", {"delete": [mine[0]]}),
                           ("/interrupt", {"prompt_id": mine[0]}), ("/history", {"delete": [mine[0]]})]:
            r = await c.post(path, body, headers=other)
            assert r.status == 403 and r.body["error"]["type"] == "forbidden", (path, body, r.body)
        assert [(await job(c, p))["state"] for p in mine] == ["pending"] * 3
        (await c.post("/queue", {"delete": [mine[0]]}, headers=me)).ok()  # its owner may
        assert (await job(c, mine[0]))["state"] == "cancelled"
        theirs = (await c.get(f"/governor/jobs/{mine[1]}", headers=other)).ok().body
        assert theirs == {"state": "pending", "position": 1, "eta_s": None, "hidden": True}
        own = (await c.get(f"/governor/jobs/{mine[1]}", headers=me)).ok().body
        assert own["client_id"] == c.client_id
        listed = (await c.get("/governor/jobs", headers=other)).ok().body["jobs"]
        assert listed and all("client_id" not in j for j in listed)
        queue = (await c.get("/queue", headers=other)).ok().body["queue_pending"]
        assert {item[1] for item in queue} == set(mine[1:]) and all(item[2] == {} and item[3] == {} for item in queue)
        seen = (await c.get("/queue", headers=me)).ok().body["queue_pending"]
        assert all(item[3]["client_id"] == c.client_id for item in seen)
        (await c.post("/queue", {"clear": True}, headers=auth)).ok()  # an admin may
        assert [(await job(c, p))["state"] for p in mine[1:]] == ["cancelled"] * 2
    finally:
        (await c.patch("/governor/config", {**DEFAULTS, "admin_token": None}, headers=auth)).ok()
        (await c.post("/governor/resume")).ok()


def _raw_multipart(filename: str, data: bytes) -> bytes:
    """A form with the file name exactly as given (aiohttp's client would percent-encode a path)."""
    return (b"--rgboundary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + filename.encode()
            + b"\"\r\nContent-Type: image/png\r\n\r\n" + data + b"\r\n--rgboundary--\r\n")


async def test_upload_refusals_all_use_the_error_shape(gov_client: ComfyClient, comfy_server):
    import aiohttp

    c = gov_client
    no_image = aiohttp.FormData()
    no_image.add_field("overwrite", "true")
    subfolder = aiohttp.FormData()
    subfolder.add_field("image", _png(8, 8), filename="ok.png", content_type="image/png")
    subfolder.add_field("subfolder", "../..")
    cases = [
        await c.request("POST", "/upload/image", data=no_image),
        await c.request("POST", "/upload/image", data=b"plain bytes", headers={"Content-Type": "text/plain"}),
        await c.request("POST", "/upload/image", data=subfolder),
        await c.request("POST", "/upload/image", data=_raw_multipart("../../evil.png", _png(8, 8)),
                        headers={"Content-Type": "multipart/form-data; boundary=rgboundary"}),
    ]
    for r in cases:
        assert r.status == 400, r.body
        assert set(r.body["error"]) == {"type", "message", "details", "extra_info"} and r.body["node_errors"] == {}
    assert not (comfy_server.input_dir.parent / "evil.png").exists()
    bomb = await _upload(c, _png_header_only(60000, 60000), "bomb.png")
    assert bomb.status == 400 and "60000x60000 = 3600000000 pixels" in bomb.body["error"]["details"]
