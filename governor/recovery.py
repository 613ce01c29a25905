"""Recovery after a restart: requeue what the last run left, in order, and become ready.

The adapter loads the unfinished jobs (``load_unfinished``), re-validates their prompts with
ComfyUI, then calls ``recover``: finished records fill the finished cache; jobs that were
running go back to the head of their tier as their next attempt (or fail with ``max_attempts``
when they crashed the server too often); queued jobs come back with their persisted fair-share
tags, so the order is the same; prompts that no longer validate fail with ``invalid_on_restore``.
Every recovered job gets a fresh queue-timeout window. Dispatch starts only after this.
"""

from __future__ import annotations

from .failures import error_record
from .jobs import Job, JobState, Reason
from .outcomes import fail_unstarted, finalize
from .runtime import PAUSED, Runtime


def load_unfinished(rt: Runtime) -> tuple[list[Job], list[Job]]:
    """What the last run left: (jobs that were running, queued jobs in dispatch order)."""
    return rt.store.load_running(), rt.store.load_queued()


def recover(rt: Runtime, running: list[Job], queued: list[Job], invalid: dict[str, str]) -> dict[str, int]:
    """Requeue what the last run left: queued jobs in order, the running ones at the head.

    ``invalid`` maps prompt ids whose prompt no longer validates (a node pack was removed, say)
    to the error; those are recorded as failed with ``invalid_on_restore``. Returns counts:
    ``requeued``, ``rerun``, ``invalid``, ``exhausted``.
    """
    with rt.lock:
        now = rt.clock()
        summary = {"requeued": 0, "rerun": 0, "invalid": 0, "exhausted": 0}
        for job in rt.store.load_finished(rt.config.history_retention):
            job.prompt = {}
            rt.queue.remember_finished(job)
        for job in running:
            if job.attempts >= job.max_attempts:
                job.errors.append(error_record(job.attempts, now, Reason.MAX_ATTEMPTS,
                                               "the server stopped while this prompt ran, too many times"))
                finalize(rt, job, JobState.FAILED, Reason.MAX_ATTEMPTS)
                summary["exhausted"] += 1
                continue
            job.errors.append(error_record(job.attempts, now, "server_restart",
                                           "the server stopped while this prompt ran; running it again"))
            job.state = JobState.PENDING
            job.started_at = None
            job.queued_at = now
            summary["rerun" if _requeue(rt, job, invalid.get(job.prompt_id), head=True) else "invalid"] += 1
        for job in queued:
            job.state = JobState.PENDING
            job.queued_at = now  # a fresh queue-timeout window after downtime
            summary["requeued" if _requeue(rt, job, invalid.get(job.prompt_id), head=False) else "invalid"] += 1
        if rt.dispatch_state == PAUSED:
            rt.queue.hold(now)  # still paused after the restart: the fresh windows wait too
        rt.ready = True
        rt.wake_worker()
        return summary


def _requeue(rt: Runtime, job: Job, error: str | None, *, head: bool) -> bool:
    if head:
        rt.queue.enqueue(job, head=True)
    else:
        rt.queue.enqueue(job, keep_tags=True)
    rt.store.update(job)
    if error is not None:
        fail_unstarted(rt, job, Reason.INVALID_ON_RESTORE, f"invalid after restart: {error}")
        return False
    return True
