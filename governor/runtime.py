"""``Runtime``: what every verb of the governor works on, in one place.

The queue state (``QueueState``) plus the collaborators (settings, store, leases, memory probe,
host, clock, statistics, metrics), the dispatch state (running / paused / draining) and the one
re-entrant lock whose condition ComfyUI's worker waits on. The verb modules are functions of a
``Runtime``; ``Governor`` (``facade``) builds one and forwards its public methods to them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cluster_queue import ClusterQueue
from .config import ConfigFile, GovernorConfig
from .host import Host
from .jobs import Job, JobState
from .leases import LeaseManager
from .memory import GateDecision, MemoryReading, ProbeChain
from .metrics import GovernorMetrics
from .queue_state import QueueState
from .store import JobStore
from .workflow_stats import WorkflowStats

RUNNING, PAUSED, DRAINING = "running", "paused", "draining"  # the dispatch states


@dataclass
class PositionCache:
    """Positions and ETAs per queue version, and what each client was last told (``positions``)."""

    table: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # prompt_id -> (position, start)
    version: int = -1  # scheduler version ``table`` was computed for
    valid_until: float = 0.0  # wall-clock time the running attempts' estimates behind ``table`` change
    sent: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    sent_totals: dict[str, int] = field(default_factory=dict)  # client -> queue length last sent
    last_broadcast: float = 0.0
    broadcast_version: int = -1


@dataclass
class Runtime:
    config_file: ConfigFile
    config: GovernorConfig
    store: JobStore
    leases: LeaseManager
    probe: ProbeChain
    host: Host
    instance_id: str
    clock: Callable[[], float]
    rng: random.Random
    queue: QueueState
    dispatch_state: str = RUNNING
    ready: bool = False  # recovery after start-up is done
    worker_seen: float | None = None  # monotonic time the worker last asked for work
    stats: WorkflowStats = field(default_factory=WorkflowStats)
    lock: threading.RLock = field(default_factory=threading.RLock)
    cond: threading.Condition = field(init=False)
    metrics: GovernorMetrics = field(init=False)  # set by the facade (it reads ``views.metrics_snapshot``)
    positions: PositionCache = field(default_factory=PositionCache)
    last_gate: GateDecision | None = None
    last_reading: MemoryReading | None = None
    recent_prompts: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)  # duplicate guard
    finished_since_prune: int = 0
    cluster: ClusterQueue | None = None  # cluster mode: the shared queue in Redis (``cluster_work``)

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def set_state(self, job: Job, state: JobState, persist: bool = True) -> None:
        job.state = state
        if persist:
            self.store.update(job)

    def read_memory(self) -> MemoryReading | None:
        self.last_reading = self.probe.read()
        return self.last_reading

    def wake_worker(self) -> None:
        self.cond.notify_all()


def wall_clock() -> float:
    return time.time()


def make_runtime(*, config_file: ConfigFile, store: JobStore, leases: LeaseManager, probe: ProbeChain, host: Host,
                 instance_id: str, clock: Callable[[], float], rng: random.Random | None) -> Runtime:
    config = config_file.load()
    queue = QueueState(config.aging_interval, last_seq=store.max_seq(),
                       last_dispatch_number=store.max_dispatch_number())
    return Runtime(config_file=config_file, config=config, store=store, leases=leases, probe=probe, host=host,
                   instance_id=instance_id, clock=clock, rng=rng or random.Random(), queue=queue,
                   dispatch_state=store.kv_get("dispatch_state") or RUNNING)

