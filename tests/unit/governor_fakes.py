"""Fakes for unit-testing the governor without ComfyUI: a clock, a host, a memory probe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from restoration_governor.governor import comfy_protocol
from restoration_governor.governor.admission import Ticket
from restoration_governor.governor.config import ConfigFile
from restoration_governor.governor.facade import Governor
from restoration_governor.governor.failures import ErrorReport
from restoration_governor.governor.jobs import Job, Priority
from restoration_governor.governor.leases import LeaseManager
from restoration_governor.governor.memory import MemoryReading, ProbeChain
from restoration_governor.governor.store import SqliteJobStore


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeHost:
    """Records what the governor asks; a job that ends unstarted is shown as ComfyHost shows it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict, str | None]] = []
        self.interrupts: list[str] = []
        self.history: dict[str, dict] = {}
        self.queue_changes = 0

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        self.events.append((event, data, sid))

    def queue_changed(self) -> None:
        self.queue_changes += 1

    def interrupt(self, prompt_id: str) -> None:
        self.interrupts.append(prompt_id)

    def job_ended_unstarted(self, job: Job, error: dict[str, Any], governor_info: dict[str, Any]) -> None:
        status, events = comfy_protocol.unstarted_failure(job, error)
        self.history[job.prompt_id] = comfy_protocol.history_entry(job, status, governor_info)
        if job.client_id:
            self.events += [(event, data, job.client_id) for event, data in events]

    def delete_history(self, prompt_id: str) -> None:
        self.history.pop(prompt_id, None)

    def of(self, event: str) -> list[dict]:
        return [data for name, data, _ in self.events if name == event]


class FakeProbe:
    name = "fake"

    def __init__(self, used: int = 1 << 30, total: int = 16 << 30) -> None:
        self.used, self.total = used, total

    def read(self) -> MemoryReading:
        return MemoryReading(self.used, self.total, self.name)


def make_governor(tmp: Path, *, clock: FakeClock | None = None, probe: FakeProbe | None = None,
                  instance: str = "a", state_dir: Path | None = None, ready: bool = True,
                  **config: Any) -> tuple[Governor, FakeHost]:
    host = FakeHost()
    state = state_dir or tmp / "state"
    gov = Governor(
        config_file=ConfigFile(state / "config.json"), store=SqliteJobStore(tmp / f"queue-{instance}.sqlite3"),
        leases=LeaseManager(state / "leases", instance), probe=ProbeChain([probe or FakeProbe()]), host=host,
        instance_id=instance, clock=clock or FakeClock(),
    )
    if config:
        gov.update_config(config)
    if ready:
        gov.recover(*gov.load_unfinished(), {})
    return gov, host


_counter = iter(range(1, 10**9))


def submit(gov: Governor, client: str = "c1", priority: Priority = Priority.NORMAL, *, prompt_id: str | None = None,
           prompt: dict | None = None, timeout: float | None = None, reserve: bool = True) -> Job:
    pid = prompt_id or f"p{next(_counter)}"
    ticket = Ticket(fair_key=client, priority=priority, queue_timeout=timeout)
    if reserve:
        gov.reserve(client)
        ticket.reserved = True
    return gov.admit(0, pid, prompt or {"1": {"class_type": "X", "inputs": {"n": pid}}},
                     {"client_id": client}, ["1"], {"api_key_comfy_org": "secret"}, ticket)


def failed(messages: list) -> ErrorReport | None:
    """What the adapter makes of a failed attempt's ComfyUI status messages."""
    return comfy_protocol.report_from_messages(messages)


def run_next(gov: Governor, success: bool = True, messages: list | None = None) -> Job | None:
    d = gov.dispatch(0)
    if d.job is None:
        return None
    gov.complete(d.job.prompt_id, success, None if success else failed(messages or []))
    return d.job


def oom_messages() -> list:
    return [["execution_start", {"prompt_id": "x"}],
            ["execution_error", {"exception_type": "torch.OutOfMemoryError",
                                 "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                                 "node_id": "1", "node_type": "KSampler"}]]


def crash(gov: Governor) -> None:
    """What a kill -9 leaves: the store as it is, and the OS dropping the dead process's file locks."""
    for attempt in gov.running.values():
        if attempt.lease is not None:
            os.close(attempt.lease.fd)  # closing the descriptor drops the lock, as process death does
    gov.running.clear()
