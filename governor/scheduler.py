"""Dispatch order: priority tier, then fair share between clients, then FIFO.

Inside a tier the order is start-time fair queuing with unit cost: a client's next job gets the
virtual start tag ``max(V, F[client])`` where ``V`` is the tag of the tier's last dispatched job
and ``F[client]`` the tag after the client's previous job. So one client with 30 prompts and two
clients with 2 each interleave round-robin, a returning client gets no credit for idle time, and
ties fall back to admission order (FIFO). Tags are fixed at admission, so the order is a sorted
list: insertion, removal and a job's position are O(log n).

Lane 0 of a tier is its head: retried prompts and the prompt that was running when the server
died go there, ahead of the fair-share lane, in the order they were requeued.

Aging lowers a waiting job's tier by one every ``aging_interval`` seconds (low -> normal -> high);
a promoted job enters its new tier like a new arrival of its client, keeping its admission seq.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from sortedcontainers import SortedList

from .jobs import Job

_TOP_TIER = 0


class FairScheduler:
    def __init__(self, aging_interval: float = 0.0) -> None:
        self.aging_interval = aging_interval
        self._order: SortedList = SortedList()  # of sort keys
        self._by_key: dict[tuple, Job] = {}
        self._keys: dict[str, tuple] = {}  # prompt_id -> its current key
        self._virtual: dict[int, float] = {}  # tier -> V
        self._finish: dict[int, dict[str, float]] = {}  # tier -> client -> F
        self._head_counter = 0.0
        self._aging_heap: list[tuple[float, int, str]] = []  # (promote_at, seq, prompt_id)
        self.version = 0  # bumps on every change of order

    # -- membership -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self._keys

    def push(self, job: Job, *, head: bool = False, keep_tags: bool = False) -> None:
        """Queue ``job`` at its tier (``job.tier``). ``keep_tags`` restores persisted lane/vstart."""
        if job.prompt_id in self._keys:
            raise KeyError(f"{job.prompt_id} is already queued")
        if not keep_tags:
            if head:
                self._head_counter += 1
                job.lane, job.vstart = 0, self._head_counter
            else:
                finish = self._finish.setdefault(job.tier, {})
                start = max(self._virtual.get(job.tier, 0.0), finish.get(job.fair_key, 0.0))
                finish[job.fair_key] = start + 1
                job.lane, job.vstart = 1, start
        else:
            if job.lane == 0:
                self._head_counter = max(self._head_counter, job.vstart)
            else:
                finish = self._finish.setdefault(job.tier, {})
                finish[job.fair_key] = max(finish.get(job.fair_key, 0.0), job.vstart + 1)
                self._virtual[job.tier] = min(self._virtual.get(job.tier, job.vstart), job.vstart)
        key = job.sort_key()
        self._order.add(key)
        self._by_key[key] = job
        self._keys[job.prompt_id] = key
        self._schedule_aging(job)
        self.version += 1

    def remove(self, job: Job) -> None:
        key = self._keys.pop(job.prompt_id)
        self._order.remove(key)
        del self._by_key[key]
        self.version += 1

    def mark_dispatched(self, job: Job) -> None:
        """Remove the job that is about to run and advance its tier's virtual time."""
        self.remove(job)
        if job.lane == 1:
            self._virtual[job.tier] = max(self._virtual.get(job.tier, 0.0), job.vstart)
            if not self._order:
                self._prune_finish_tags()

    def requeue(self, job: Job, *, tier: int | None = None) -> None:
        """Move a queued job to another tier (priority change or aging) as a new arrival there."""
        self.remove(job)
        if tier is not None:
            job.tier = tier
        self.push(job)

    # -- order ------------------------------------------------------------------------------------
    def position(self, job: Job) -> int:
        """1-based position among queued jobs, O(log n)."""
        return self._order.index(self._keys[job.prompt_id]) + 1

    def __iter__(self) -> Iterator[Job]:
        by_key = self._by_key
        return (by_key[k] for k in self._order)

    def first(self, eligible: Callable[[Job], bool]) -> Job | None:
        """The first job in dispatch order that ``eligible`` accepts (retries in backoff are skipped)."""
        for key in self._order:
            job = self._by_key[key]
            if eligible(job):
                return job
        return None

    def get(self, prompt_id: str) -> Job | None:
        key = self._keys.get(prompt_id)
        return None if key is None else self._by_key[key]

    # -- aging ------------------------------------------------------------------------------------
    def set_aging_interval(self, interval: float) -> None:
        if interval == self.aging_interval:
            return
        self.aging_interval = interval
        self.reschedule_aging()

    def reschedule_aging(self) -> None:
        """Recompute every promotion time (after the interval or the jobs' ``queued_at`` changed)."""
        self._aging_heap = []
        for job in self._by_key.values():
            self._schedule_aging(job)

    def _schedule_aging(self, job: Job) -> None:
        if self.aging_interval > 0 and job.tier > _TOP_TIER:
            steps = int(job.priority) - job.tier + 1  # promotions already received, plus the next one
            heapq.heappush(self._aging_heap, (job.queued_at + steps * self.aging_interval, job.seq, job.prompt_id))

    def promote_aged(self, now: float) -> list[Job]:
        """Raise every job whose waiting time earned it a higher tier; return those promoted."""
        promoted = []
        while self._aging_heap and self._aging_heap[0][0] <= now:
            _, _, prompt_id = heapq.heappop(self._aging_heap)
            job = self.get(prompt_id)
            if job is None or job.tier == _TOP_TIER:
                continue
            if job.queued_at + (int(job.priority) - job.tier + 1) * self.aging_interval > now:
                continue  # a stale entry (the job was requeued since); its live entry is still queued
            self.requeue(job, tier=job.tier - 1)
            promoted.append(job)
        return promoted

    def _prune_finish_tags(self) -> None:
        """Drop client tags that can no longer matter (they are at or below their tier's V)."""
        for tier, finish in self._finish.items():
            v = self._virtual.get(tier, 0.0)
            for client in [c for c, f in finish.items() if f <= v]:
                del finish[client]
