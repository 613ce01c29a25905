"""``Governor``: the governor's public face, a thin facade over the queue state and its verbs.

It owns the queue. ComfyUI's worker thread asks it for the next prompt (``dispatch``) and
reports each attempt's end (``complete``); HTTP handlers admit prompts and act on jobs; a
watchdog thread calls ``tick`` a few times a second. Every method forwards to the module that
holds the concern (see the module map in ``docs/governor.md``); all of them work on one
``Runtime``, guarded by one re-entrant lock whose condition the worker waits on. What the
governor needs from ComfyUI comes through ``Host``, so it is unit-testable alone.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from . import admission, control, dispatch, outcomes, recovery, views, watchdog
from .admission import Ticket
from .auth import is_admin_request
from .cluster_context import ClusterContext
from .config import ConfigFile, GovernorConfig
from .dispatch import Dispatch
from .failures import ErrorReport
from .host import Host
from .jobs import Job, Priority
from .leases import LeaseManager
from .memory import ProbeChain
from .metrics import GovernorMetrics
from .outcomes import Completion
from .queue_state import Attempt, QueueState
from .runtime import Runtime, make_runtime, wall_clock
from .scheduler import FairScheduler
from .store import JobStore
from .views import EVERYONE, Viewer
from .workflow_stats import WorkflowStats

__all__ = ["Completion", "Dispatch", "Governor", "Ticket", "Viewer"]


class Governor:
    def __init__(self, *, config_file: ConfigFile, store: JobStore, leases: LeaseManager, probe: ProbeChain,
                 host: Host, instance_id: str, clock: Callable[[], float] = wall_clock,
                 rng: random.Random | None = None) -> None:
        self.rt: Runtime = make_runtime(config_file=config_file, store=store, leases=leases, probe=probe, host=host,
                                        instance_id=instance_id, clock=clock, rng=rng)
        self.rt.metrics = GovernorMetrics(partial(views.metrics_snapshot, self.rt))

    # -- what the adapter, the HTTP layer and tests read ------------------------------------------
    @property
    def lock(self) -> threading.RLock:
        return self.rt.lock

    @property
    def cond(self) -> threading.Condition:
        return self.rt.cond

    @property
    def config(self) -> GovernorConfig:
        return self.rt.config

    @property
    def state(self) -> str:
        return self.rt.dispatch_state

    @property
    def ready(self) -> bool:
        return self.rt.ready

    @property
    def metrics(self) -> GovernorMetrics:
        return self.rt.metrics

    @property
    def store(self) -> JobStore:
        return self.rt.store

    @property
    def stats(self) -> WorkflowStats:
        return self.rt.stats

    @property
    def queue(self) -> QueueState:
        return self.rt.queue

    @property
    def scheduler(self) -> FairScheduler:
        return self.rt.queue.scheduler

    @property
    def jobs(self) -> dict[str, Job]:
        return self.rt.queue.jobs

    @property
    def running(self) -> dict[str, Attempt]:
        return self.rt.queue.running

    @property
    def finished(self) -> OrderedDict[str, Job]:
        return self.rt.queue.finished

    @property
    def dispatch_counter(self) -> int:
        return self.rt.queue.dispatch_counter

    # -- admission --------------------------------------------------------------------------------
    def reserve(self, fair_key: str) -> None:
        admission.reserve(self.rt, fair_key)

    def unreserve(self, fair_key: str) -> None:
        admission.unreserve(self.rt, fair_key)

    def check_duplicate(self, fair_key: str, prompt: Any) -> None:
        admission.check_duplicate(self.rt, fair_key, prompt)

    def remember_prompt(self, fair_key: str, prompt: Any, prompt_id: str) -> None:
        admission.remember_prompt(self.rt, fair_key, prompt, prompt_id)

    def idempotency_lookup(self, key: str, request_digest: str | None = None) -> dict[str, Any] | None:
        return admission.idempotency_lookup(self.rt, key, request_digest)

    def idempotency_remember(self, key: str, body: dict[str, Any], request_digest: str | None = None) -> None:
        admission.idempotency_remember(self.rt, key, body, request_digest)

    def is_known(self, prompt_id: str) -> bool:
        return admission.is_known(self.rt, prompt_id)

    def admit(self, number: float, prompt_id: str, prompt: dict, extra_data: dict, outputs: list,
              sensitive: dict, ticket: Ticket | None) -> Job:
        return admission.admit(self.rt, number, prompt_id, prompt, extra_data, outputs, sensitive, ticket)

    def admission_info(self, job: Job) -> dict[str, Any]:
        return admission.admission_info(self.rt, job)

    # -- dispatch and outcomes (worker thread) ----------------------------------------------------
    def dispatch(self, timeout: float | None, wake: Callable[[], bool] | None = None) -> Dispatch:
        return dispatch.dispatch(self.rt, timeout, wake)

    def complete(self, prompt_id: str, success: bool, report: ErrorReport | None) -> Completion:
        return outcomes.complete(self.rt, prompt_id, success, report)

    def hide_failed_attempt(self, prompt_id: str, report: ErrorReport) -> bool:
        return outcomes.hide_failed_attempt(self.rt, prompt_id, report)

    def is_requeued(self, prompt_id: str) -> bool:
        return outcomes.is_requeued(self.rt, prompt_id)

    # -- control ----------------------------------------------------------------------------------
    def find(self, prompt_id: str) -> Job:
        return control.find(self.rt, prompt_id)

    def cancel(self, prompt_id: str, *, client_id: str | None = None, admin: bool = True) -> Job:
        return control.cancel(self.rt, prompt_id, client_id=client_id, admin=admin)

    def cancel_all_queued(self) -> int:
        return control.cancel_all_queued(self.rt)

    def set_priority(self, prompt_id: str, priority: Priority, *, client_id: str | None, admin: bool) -> Job:
        return control.set_priority(self.rt, prompt_id, priority, client_id=client_id, admin=admin)

    def retry(self, prompt_id: str, *, client_id: str | None, admin: bool) -> Job:
        return control.retry(self.rt, prompt_id, client_id=client_id, admin=admin)

    def set_dispatch_state(self, state: str) -> None:
        control.set_dispatch_state(self.rt, state)

    def update_config(self, patch: Any) -> GovernorConfig:
        return control.update_config(self.rt, patch)

    def is_admin(self, headers, remote: str | None) -> bool:
        return is_admin_request(self.rt.config, headers, remote)

    # -- watchdog, views, recovery ----------------------------------------------------------------
    def tick(self) -> None:
        watchdog.tick(self.rt)

    def job_view(self, job: Job, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        return views.job_view(self.rt, job, viewer)

    def list_jobs(self, client_id: str | None = None, state: str | None = None, limit: int = 100,
                  offset: int = 0, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        return views.list_jobs(self.rt, client_id, state, limit, offset, viewer)

    def cluster_pending(self, limit: int = 500) -> list[Job] | None:
        """Cluster mode: the first ``limit`` pending jobs of the shared queue in run order; else None."""
        return views.cluster_pending(self.rt, limit)

    @property
    def cluster_context(self) -> ClusterContext | None:
        """Cluster mode: which Redis, cluster and server this is (``cluster_context``); else None."""
        return views.cluster_context(self.rt)

    def cluster_depth(self) -> int | None:
        return views.cluster_depth(self.rt)

    def health(self) -> dict[str, Any]:
        return views.health(self.rt)

    def counts(self) -> Counter[tuple[str, str]]:
        return views.counts(self.rt)

    def status(self, *, can_admin: bool = False, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        return views.status(self.rt, can_admin=can_admin, viewer=viewer)

    def metrics_snapshot(self) -> dict[str, Any]:
        return views.metrics_snapshot(self.rt)

    def load_unfinished(self) -> tuple[list[Job], list[Job]]:
        return recovery.load_unfinished(self.rt)

    def recover(self, running: list[Job], queued: list[Job], invalid: dict[str, str]) -> dict[str, int]:
        return recovery.recover(self.rt, running, queued, invalid)
