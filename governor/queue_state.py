"""The queue's mutable state and the invariants that tie its structures together.

``QueueState`` owns every structure that describes where jobs are: the jobs by id (queued and
running), the fair scheduler (dispatch order), the per-client counts of waiting jobs and of
reservations (admission caps), the queue-timeout deadline heap, the running attempts and the
cache of finished jobs. Every change goes through one of its methods, so the structures cannot
drift apart: a job is in ``jobs`` exactly while it is queued or running; it is in the scheduler
and counted for its client exactly while it is queued; it has an ``Attempt`` exactly while it runs.

Nothing here persists, locks, sends or logs: the verb modules (``admission``, ``dispatch``,
``outcomes``, ``control``, ``watchdog``, ``recovery``) do that around these calls, under the
governor's lock.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from .jobs import Job, Reason
from .leases import Lease
from .scheduler import FairScheduler


@dataclass
class Attempt:
    """The volatile side of one running attempt (never persisted; gone when the attempt ends)."""

    lease: Lease | None  # the concurrency slot it holds (None only for attempts restored in tests)
    memory_baseline: int | None  # bytes in use when it started; peaks are sampled above this
    interrupt_reason: Reason | None = None  # set when the governor interrupts it (cancel, exec timeout)
    interrupted_at: float | None = None  # wall-clock seconds of that interrupt
    retry_planned: bool = False  # its error was hidden from the client: it will be retried


@dataclass
class GateWait:
    """The memory-gate wait of the job at the head of the queue (only the head ever waits)."""

    prompt_id: str
    since: float | None = None  # wall-clock seconds the gate first held it; None while open
    released_models: bool = False  # ComfyUI was asked to unload its models for this wait (once per wait)


class QueueState:
    def __init__(self, aging_interval: float, *, last_seq: int, last_dispatch_number: int) -> None:
        self.jobs: dict[str, Job] = {}  # queued and running
        self.scheduler = FairScheduler(aging_interval)
        self.running: dict[str, Attempt] = {}
        self.finished: OrderedDict[str, Job] = OrderedDict()  # newest last, bounded by ``finish(keep=)``
        self.gate: GateWait | None = None
        self.held_since: float | None = None  # the queue-timeout clock is stopped (paused) since then
        self.seq = last_seq
        self.dispatch_counter = last_dispatch_number
        self._queued_by_client: Counter[str] = Counter()
        self._reserved: Counter[str] = Counter()
        self._deadlines: list[tuple[float, int, str]] = []  # (deadline, seq, prompt_id)

    # -- counts -----------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Jobs waiting to start."""
        return len(self.scheduler)

    def is_queued(self, prompt_id: str) -> bool:
        return prompt_id in self.scheduler

    def waiting_with_reservations(self, fair_key: str | None = None) -> int:
        """Queued jobs plus places held by requests still being validated (all clients, or one)."""
        if fair_key is None:
            return len(self.scheduler) + sum(self._reserved.values())
        return self._queued_by_client[fair_key] + self._reserved[fair_key]

    # -- admission --------------------------------------------------------------------------------
    def reserve(self, fair_key: str) -> None:
        self._reserved[fair_key] += 1

    def unreserve(self, fair_key: str) -> None:
        if self._reserved[fair_key] > 0:
            self._reserved[fair_key] -= 1
        if not self._reserved[fair_key]:
            del self._reserved[fair_key]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- queue membership -------------------------------------------------------------------------
    def enqueue(self, job: Job, *, head: bool = False, keep_tags: bool = False) -> None:
        """Queue ``job`` (new, retried, re-queued or recovered); ``head`` puts it first in its tier."""
        self.jobs[job.prompt_id] = job
        self.scheduler.push(job, head=head, keep_tags=keep_tags)
        self._queued_by_client[job.fair_key] += 1
        deadline = job.deadline()
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, job.seq, job.prompt_id))

    def unqueue(self, job: Job) -> None:
        """Take a queued job out of the queue without running it (it stays in ``jobs`` until ``finish``)."""
        self.scheduler.remove(job)
        self._uncount(job)

    def discard(self, job: Job) -> None:
        """Undo ``enqueue`` of a job whose admission failed (it was never stored)."""
        self.unqueue(job)
        self.jobs.pop(job.prompt_id, None)

    def change_tier(self, job: Job, tier: int) -> None:
        self.scheduler.requeue(job, tier=tier)

    def promote_aged(self, now: float) -> list[Job]:
        return self.scheduler.promote_aged(now)

    def set_aging_interval(self, interval: float) -> None:
        self.scheduler.set_aging_interval(interval)

    def hold(self, now: float) -> None:
        """Stop the queue-timeout (and aging) clock of every queued job: nothing expires while held."""
        if self.held_since is None:
            self.held_since = now

    def release(self, now: float) -> list[Job]:
        """Restart the clock: each queued job keeps the time it had left (one queued while held gets
        its whole timeout from now). Returns the jobs whose ``queued_at`` moved."""
        if self.held_since is None:
            return []
        since, self.held_since = self.held_since, None
        jobs = [job for job in self.scheduler if job.queued_at < now]
        for job in jobs:
            job.queued_at += now - max(since, job.queued_at)
            deadline = job.deadline()
            if deadline is not None:  # the old entry no longer matches ``deadline()``: it is skipped
                heapq.heappush(self._deadlines, (deadline, job.seq, job.prompt_id))
        self.scheduler.reschedule_aging()
        return jobs

    def seconds_left(self, job: Job, now: float) -> float | None:
        """Seconds until ``job``'s queue timeout (frozen while held); None without one."""
        deadline = job.deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - (self.held_since if self.held_since is not None else now))

    def pop_expired(self, now: float) -> list[Job]:
        """Queued jobs whose queue-timeout deadline is at or before ``now`` (each returned once);
        none while the clock is held."""
        if self.held_since is not None:
            return []
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, prompt_id = heapq.heappop(self._deadlines)
            job = self.jobs.get(prompt_id)
            if job is None or not job.state.queued or job.deadline() != deadline:
                continue  # finished, running, or requeued with a newer deadline
            expired.append(job)
        return expired

    def _uncount(self, job: Job) -> None:
        self._queued_by_client[job.fair_key] -= 1
        if self._queued_by_client[job.fair_key] <= 0:
            del self._queued_by_client[job.fair_key]

    # -- the memory gate's wait -------------------------------------------------------------------
    def gate_wait(self, head: Job) -> tuple[GateWait, Job | None]:
        """The wait record of ``head``, and the previous head when the head changed (its wait is over)."""
        if self.gate is not None and self.gate.prompt_id == head.prompt_id:
            return self.gate, None
        previous = self.jobs.get(self.gate.prompt_id) if self.gate is not None else None
        self.gate = GateWait(head.prompt_id)
        return self.gate, previous

    # -- attempts ---------------------------------------------------------------------------------
    def start(self, job: Job, lease: Lease | None, memory_baseline: int | None) -> GateWait | None:
        """Move the head ``job`` from the queue to running; returns the gate wait it ends, if any."""
        self.scheduler.mark_dispatched(job)
        self._uncount(job)
        gate = self.gate if self.gate is not None and self.gate.prompt_id == job.prompt_id else None
        self.gate = None
        self.dispatch_counter += 1
        job.dispatch_number = self.dispatch_counter
        self.running[job.prompt_id] = Attempt(lease, memory_baseline)
        return gate

    def adopt(self, job: Job, lease: Lease | None, memory_baseline: int | None) -> None:
        """Cluster mode: ``job`` was taken from the shared queue and starts here (it was never queued here)."""
        self.jobs[job.prompt_id] = job
        self.dispatch_counter += 1
        job.dispatch_number = self.dispatch_counter
        self.running[job.prompt_id] = Attempt(lease, memory_baseline)

    def release_job(self, prompt_id: str) -> None:
        """Cluster mode: a job whose attempt ended here went back to the shared queue (a retry)."""
        self.jobs.pop(prompt_id, None)
        self.running.pop(prompt_id, None)

    def attempt(self, prompt_id: str) -> Attempt | None:
        return self.running.get(prompt_id)

    def attempts(self) -> Iterator[tuple[Job, Attempt]]:
        """The running jobs with their attempts (a snapshot: safe to change the state meanwhile)."""
        return iter([(self.jobs[pid], attempt) for pid, attempt in self.running.items()])

    def end_attempt(self, prompt_id: str) -> Attempt | None:
        return self.running.pop(prompt_id, None)

    # -- finished jobs ----------------------------------------------------------------------------
    def finish(self, job: Job, keep: int) -> None:
        """``job`` reached a final state: out of the live structures, into the finished cache."""
        self.jobs.pop(job.prompt_id, None)
        self.running.pop(job.prompt_id, None)
        self.finished[job.prompt_id] = job
        while len(self.finished) > keep:
            self.finished.popitem(last=False)

    def remember_finished(self, job: Job) -> None:
        """A finished job loaded from the store at start-up (oldest first)."""
        self.finished[job.prompt_id] = job

    def reopen(self, prompt_id: str) -> None:
        """A finished job goes back to the queue (retry): it leaves the finished cache."""
        self.finished.pop(prompt_id, None)

    def find(self, prompt_id: str) -> Job | None:
        return self.jobs.get(prompt_id) or self.finished.get(prompt_id)
