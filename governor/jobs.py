"""What the governor knows about one prompt: its job record, states and priorities."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Priority(enum.IntEnum):
    """Dispatch tiers; lower runs first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Any) -> Priority:
        if isinstance(value, str) and value.strip().lower() in ("high", "normal", "low"):
            return cls[value.strip().upper()]
        raise ValueError(f"unknown priority {value!r}; use high, normal or low")


class JobState(str, enum.Enum):
    PENDING = "pending"
    WAITING_FOR_MEMORY = "waiting_for_memory"  # pending, at the head, held by the memory gate
    RUNNING = "running"
    STUCK = "stuck"  # running past exec_timeout + grace without honouring the interrupt
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in STATE_GROUPS["final"]

    @property
    def queued(self) -> bool:
        return self in STATE_GROUPS["queued"]

    @property
    def active(self) -> bool:
        return self in STATE_GROUPS["active"]


# The one definition of the state groups. The web extension's copy (web/lib/job_states.mjs) is
# generated from it, and tests/unit/test_governor_jobs.py fails when the copy is stale.
STATE_GROUPS: dict[str, tuple[JobState, ...]] = {
    "queued": (JobState.PENDING, JobState.WAITING_FOR_MEMORY),  # waiting to start
    "active": (JobState.RUNNING, JobState.STUCK),  # an attempt is running
    "final": (JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED),  # finished for good
}


class Reason(str, enum.Enum):
    """Why a job ended other than in success (or why it was retried)."""

    QUEUE_TIMEOUT = "queue_timeout"
    EXEC_TIMEOUT = "exec_timeout"
    MEMORY_GATE_TIMEOUT = "memory_gate_timeout"
    OOM = "oom"
    TRANSIENT = "transient"
    ERROR = "error"  # a node raised
    CANCELLED = "cancelled"  # through the governor API or a queue delete
    INTERRUPTED = "interrupted"  # ComfyUI's own interrupt (the UI's cancel button)
    INVALID_ON_RESTORE = "invalid_on_restore"
    MAX_ATTEMPTS = "max_attempts"  # crashed while running too often


@dataclass
class Job:
    """One admitted prompt. Times are wall-clock seconds (``time.time()``): they are persisted."""

    prompt_id: str
    seq: int  # admission order, unique and increasing
    prompt: dict[str, Any]
    extra_data: dict[str, Any]  # sensitive keys removed
    outputs: list[str]
    client_id: str | None
    fair_key: str  # the client for fairness and caps: client_id, or the peer address without one
    priority: Priority  # as requested
    created_at: float
    queued_at: float  # (re)entered the queue; the queue timeout counts from here
    max_attempts: int
    queue_timeout: float | None = None  # effective seconds; None = no timeout
    state: JobState = JobState.PENDING
    number: float = 0.0  # ComfyUI's original priority number (kept for reference)
    tier: int = 1  # current tier (aging may lower it below the priority)
    lane: int = 1  # 0 = head of its tier (retries, crash recovery), 1 = fair-share order
    vstart: float = 0.0  # fair-share virtual start tag within its tier
    attempts: int = 0
    not_before: float = 0.0  # retry backoff: not dispatched before this time
    started_at: float | None = None
    finished_at: float | None = None
    reason: Reason | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    idempotency_key: str | None = None
    dispatch_number: int = 0  # the number the prompt ran under (ComfyUI history / queue order)
    exec_seconds: float | None = None
    peak_memory: int | None = None  # bytes over the level at dispatch, as sampled
    # volatile (never persisted): ComfyUI's sensitive extra_data keys, for this process's runs only.
    # What belongs to one running attempt lives in ``queue_state.Attempt``.
    sensitive: dict[str, Any] = field(default_factory=dict, repr=False)

    def sort_key(self) -> tuple[int, int, float, int]:
        return (self.tier, self.lane, self.vstart, self.seq)

    def deadline(self) -> float | None:
        return None if not self.queue_timeout else self.queued_at + self.queue_timeout

    def summary(self) -> dict[str, Any]:
        """The job as the API shows it (no prompt body)."""
        return {
            "prompt_id": self.prompt_id,
            "client_id": self.client_id,
            "state": self.state.value,
            "priority": self.priority.label,
            "effective_priority": Priority(self.tier).label,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "not_before": self.not_before or None,
            "queue_timeout": self.queue_timeout,
            "reason": self.reason.value if self.reason else None,
            "last_error": self.errors[-1] if self.errors else None,
            "errors": list(self.errors),
            "fingerprint": self.fingerprint,
            "exec_seconds": self.exec_seconds,
        }
