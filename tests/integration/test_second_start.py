"""A second start of ComfyUI on a port (or queue) that a live server uses stops with a message and leaves
the live server's durable queue alone (it used to recover it: the running job was marked as a re-run)."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer, free_port
from harness.governor import job, wait_job
from harness.graphs import sleep_prompt
from harness.paths import COMFYUI_DIR

pytestmark = pytest.mark.slow


def _start_and_fail(server: ComfyServer, env: dict[str, str] | None = None) -> tuple[int, str]:
    import os

    out = subprocess.run(server.command(), cwd=COMFYUI_DIR, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    return out.returncode, out.stdout + out.stderr


def _stored(store, prompt_id: str) -> dict:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        state, errors = db.execute("SELECT state, errors FROM jobs WHERE prompt_id=?", (prompt_id,)).fetchone()
    return {"state": state, "errors": json.loads(errors)}


async def test_a_second_start_on_a_busy_port_stops_before_touching_the_live_queue(comfy_server_factory, tmp_path):
    live = comfy_server_factory("live", base_dir=tmp_path / "data")
    store = live.user_dir / "restoration-governor" / f"queue-port{live.port}.sqlite3"
    async with ComfyClient(live.url) as c:
        prompt_id = await c.queue_prompt(sleep_prompt(seconds=600, steps=600))
        await wait_job(c, prompt_id, "running")
        before = _stored(store, prompt_id)
        assert before["state"] == "running"

        # Same folder, same port: what a second `make run` does.
        second = ComfyServer(tmp_path / "data", port=live.port, name="second")
        code, output = _start_and_fail(second)
        assert code != 0
        assert f"port {live.port} is in use — use `PORT=…`" in output
        assert "OSError" not in output and "Errno 98" not in output, output[-3000:]
        assert _stored(store, prompt_id) == before, "the live server's queue was rewritten"

        # Another port but the same queue (a copied GOVERNOR_INSTANCE_ID): refused as well.
        third = ComfyServer(tmp_path / "data", port=free_port(), name="third")
        code, output = _start_and_fail(third, {"GOVERNOR_INSTANCE_ID": f"port{live.port}"})
        assert code != 0
        assert f"the queue {store} belongs to another running server (instance 'port{live.port}')" in output
        assert _stored(store, prompt_id) == before

        running = await job(c, prompt_id)
        assert running["state"] == "running" and live.alive()
        (await c.post(f"/governor/jobs/{prompt_id}/cancel", {})).ok()
