"""Helpers for governor integration tests: defaults reset, waiting on job states, run order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .client import ComfyClient, message_timestamps

# Settings tests may change; restored after each test on the shared server.
DEFAULTS: dict[str, Any] = {
    "max_pending": 10000, "max_pending_per_client": 2000, "max_prompt_bytes": 16 << 20, "duplicate_window": 0.0,
    "aging_interval": 600.0, "max_concurrent": 1, "queue_timeout": 300.0, "queue_timeout_low": 0.0,
    "exec_timeout": 0.0,
    "exec_timeout_grace": 30.0, "retry_attempts": 2, "retry_backoff": 0.2, "retry_backoff_max": 60.0,
    "retry_jitter": 0.0, "retry_node_errors": False, "memory_gate": True, "max_used_fraction": 0.95,
    "min_free_bytes": 0, "max_gate_wait": 600.0, "gate_timeout_action": "run", "upload_max_bytes": 20 << 20,
    "upload_max_pixels": 80_000_000, "upload_formats": ["png", "jpeg", "bmp", "webp", "tiff"],
    "event_throttle": 0.2, "admin_token": None, "guard_core_routes": "auto",
}


async def reset_governor(c: ComfyClient, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    (await c.patch("/governor/config", DEFAULTS, headers=headers)).ok()
    await c.post("/queue", {"clear": True})
    (await c.post("/governor/resume")).ok()
    await c.post("/interrupt", {})
    await wait_idle(c)


async def wait_idle(c: ComfyClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        q = await c.queue()
        if not q["queue_running"] and not q["queue_pending"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not idle: {q}")
        await asyncio.sleep(0.1)


async def job(c: ComfyClient, prompt_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The governor's view of a job (with an admin token set, send it or the owner's X-Client-Id:
    other callers see other clients' jobs as state and position only)."""
    return (await c.get(f"/governor/jobs/{prompt_id}", headers=headers)).ok().body


async def wait_job(c: ComfyClient, prompt_id: str, states: set[str] | str, timeout: float = 60.0) -> dict[str, Any]:
    states = {states} if isinstance(states, str) else states
    deadline = time.monotonic() + timeout
    while True:
        j = await job(c, prompt_id)
        if j["state"] in states:
            return j
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prompt_id} still {j['state']} (wanted {states}): {j}")
        await asyncio.sleep(0.1)


async def wait_all_history(c: ComfyClient, prompt_ids: list[str], timeout: float = 120.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        history = (await c.get("/history")).ok().body
        done = {p: history[p] for p in prompt_ids if p in history}
        if len(done) == len(prompt_ids):
            return done
        if time.monotonic() > deadline:
            missing = [p for p in prompt_ids if p not in history]
            raise TimeoutError(f"{len(missing)} prompts never finished: {missing[:5]}")
        await asyncio.sleep(0.2)


def run_order(entries: dict[str, dict]) -> list[str]:
    """Prompt ids by the time ComfyUI started executing them."""
    return sorted(entries, key=lambda p: message_timestamps(entries[p])["execution_start"])


def run_interval(entry: dict) -> tuple[int, int]:
    ts = message_timestamps(entry)
    end = ts.get("execution_success", ts.get("execution_error", ts.get("execution_interrupted")))
    return ts["execution_start"], end
