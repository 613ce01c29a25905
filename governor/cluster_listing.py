"""Cluster-wide job lists for ``/governor/jobs``: the shared records, read in bounded slices.

Running jobs come from the running registry (``running`` HASH; this server's own from memory),
pending ones from the shared order (``page`` script, O(log n + page)), finished ones from
``finished``, a sorted set of recently finished prompt ids scored by ``finished_at`` (newest
last) and capped at ``FINISHED_CAP`` ids; each id's final state is its ``where:<id>`` summary
(kept 7 days; ids whose summary expired are dropped from the index as they are met). A local record
never overrides a shared one; callers fall back to local records only while Redis is unreachable.

Errors: ``page`` raises ``redis.RedisError`` when Redis cannot be reached.
"""

from __future__ import annotations

import json

from .cluster_context import FINISHED_KEY, where_key
from .cluster_queue import decode, from_summary
from .jobs import Job
from .redis_jobs import text
from .runtime import Runtime

FILTER_SCAN = 5000  # a filtered list looks at most this many pending and this many finished jobs


def running_jobs(rt: Runtime) -> list[Job]:
    """Every job running in the cluster: this server's (its live records) first, then the others'."""
    assert rt.cluster is not None
    local = [rt.queue.jobs[p] for p in rt.queue.running]
    mine = {j.prompt_id for j in local}
    elsewhere = [p for p in rt.cluster.running_elsewhere() if p not in mine]
    return local + [j for j in map(rt.cluster.lookup, elsewhere) if j is not None]


def finished_jobs(rt: Runtime, start: int, count: int) -> list[Job]:
    """Finished jobs ``start .. start+count-1``, newest first, from their shared summaries."""
    assert rt.cluster is not None
    if count <= 0:
        return []
    redis, prefix = rt.cluster.redis, rt.cluster.prefix
    ids = [text(p) for p in redis.zrevrange(prefix + FINISHED_KEY, start, start + count - 1)]
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for p in ids:
        pipe.hget(where_key(prefix, p), "summary")
    out, gone = [], []
    for p, raw in zip(ids, pipe.execute(), strict=True):
        if raw is None:
            gone.append(p)
        else:
            out.append(from_summary(p, json.loads(text(raw))))
    if gone:  # their summaries expired: forget them
        redis.zrem(prefix + FINISHED_KEY, *gone)
    return out


def page(rt: Runtime, client_id: str | None, state: str | None, limit: int,
         offset: int) -> tuple[list[Job], int]:
    """(jobs ``offset .. offset+limit-1`` of running, pending in run order, finished newest first,
    filtered by client and state; how many match). Unfiltered, each group is read only as far as
    the page needs; filtered, at most ``FILTER_SCAN`` pending and finished jobs are looked at."""
    assert rt.cluster is not None
    cluster = rt.cluster
    running = running_jobs(rt)
    if client_id is None and state is None:
        n_pending = len(cluster.rq)
        n_finished = int(cluster.redis.zcard(cluster.prefix + FINISHED_KEY))
        out = running[offset:offset + limit]
        p_start = max(0, offset - len(running))
        out += [decode(q) for q in cluster.rq.page(p_start, limit - len(out), payload=True)] \
            if len(out) < limit and p_start < n_pending else []
        f_start = max(0, offset - len(running) - n_pending)
        out += finished_jobs(rt, f_start, limit - len(out)) if len(out) < limit else []
        return out, len(running) + n_pending + n_finished
    candidates = running + [decode(q) for q in cluster.rq.page(0, FILTER_SCAN, payload=True)] \
        + finished_jobs(rt, 0, FILTER_SCAN)
    if client_id is not None:
        candidates = [j for j in candidates if j.client_id == client_id]
    if state is not None:
        candidates = [j for j in candidates if j.state.value == state]
    return candidates[offset:offset + limit], len(candidates)
