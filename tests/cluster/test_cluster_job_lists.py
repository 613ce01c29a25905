"""``/governor/jobs`` and ``/governor/jobs/{id}`` show the cluster's shared records on every server.

Two in-process governors on a real ``redis-server`` (the ``pair`` fixture of test_cluster_governor).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from restoration_governor.governor.cluster_context import FINISHED_CAP
from restoration_governor.governor.jobs import JobState, Priority, Reason

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from governor_fakes import submit
from test_cluster_governor import pair  # noqa: F401  (fixture)

PROMPT = {"1": {"class_type": "X", "inputs": {}}}


def ids(listing) -> list[str]:
    return [j["prompt_id"] for j in listing["jobs"]]


def test_every_server_lists_the_same_jobs_and_a_stale_local_record_does_not_win(pair):  # noqa: F811
    a, b, _ctx_a, _ctx_b = pair
    done = submit(a, "alice", prompt=PROMPT, priority=Priority.LOW)
    assert b.dispatch(0).job.prompt_id == done.prompt_id
    b.complete(done.prompt_id, True, None)
    running = submit(b, "bob", prompt=PROMPT)
    assert a.dispatch(0).job.prompt_id == running.prompt_id
    waiting = submit(b, "carol", prompt=PROMPT)

    # a restarted after kill -9 would hold a stale local record of the job it never finished
    stale = dataclasses.replace(done, state=JobState.FAILED, reason=Reason.INTERRUPTED, finished_at=1.0, attempts=1)
    a.rt.queue.finished[done.prompt_id] = stale

    expected = [running.prompt_id, waiting.prompt_id, done.prompt_id]
    for gov in (a, b):
        listing = gov.list_jobs()
        assert ids(listing) == expected and listing["total"] == 3
        by_id = {j["prompt_id"]: j for j in listing["jobs"]}
        assert (by_id[done.prompt_id]["state"], by_id[done.prompt_id]["server"]) == ("success", "b")
        assert by_id[done.prompt_id]["effective_priority"] == "low"
        assert (by_id[running.prompt_id]["state"], by_id[running.prompt_id]["server"]) == ("running", "a")
        assert by_id[waiting.prompt_id]["state"] == "pending"
        one = gov.job_view(gov.find(done.prompt_id))
        assert (one["state"], one["server"], one["effective_priority"]) == ("success", "b", "low")
        assert [ids(gov.list_jobs(limit=1, offset=k)) for k in range(4)] == [[p] for p in expected] + [[]]
        assert ids(gov.list_jobs(state="success")) == [done.prompt_id]
        assert ids(gov.list_jobs(client_id="carol")) == [waiting.prompt_id]


def test_the_finished_index_is_capped(pair, redis_client):  # noqa: F811
    a, _b, ctx_a, _ctx_b = pair
    for n in range(FINISHED_CAP + 3):
        a.rt.cluster.record_summary(f"old{n}", {"prompt_id": f"old{n}", "state": "success", "finished_at": n})
    assert redis_client.zcard(ctx_a.prefix + "finished") == FINISHED_CAP
    listing = a.list_jobs(limit=2)
    assert ids(listing) == [f"old{FINISHED_CAP + 2}", f"old{FINISHED_CAP + 1}"]
    assert listing["total"] == FINISHED_CAP
