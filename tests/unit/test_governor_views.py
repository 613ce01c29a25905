"""Read views: job lists, status counts, health and the metrics snapshot (governor/views.py)."""

from __future__ import annotations

from governor_fakes import make_governor, run_next, submit


def test_jobs_list_running_then_queued_in_run_order_then_finished_newest_first(tmp_path):
    gov, _ = make_governor(tmp_path)
    done = [submit(gov, "me"), submit(gov, "me")]
    run_next(gov)
    run_next(gov)
    first, waiting = submit(gov, "me"), submit(gov, "me")
    other = submit(gov, "other")  # a new client: fair share puts it ahead of "me"'s next prompts
    running = gov.dispatch(0).job
    assert running is other
    listed = gov.list_jobs()
    order = [j["prompt_id"] for j in listed["jobs"]]
    assert order == [other.prompt_id, first.prompt_id, waiting.prompt_id, done[1].prompt_id, done[0].prompt_id]
    assert [j["position"] for j in listed["jobs"]] == [None, 1, 2, None, None]
    mine = gov.list_jobs(client_id="me", state="success", limit=1, offset=1)
    assert mine["total"] == 2 and [j["prompt_id"] for j in mine["jobs"]] == [done[0].prompt_id]


def test_status_health_and_metrics_snapshot_count_the_same_jobs(tmp_path):
    gov, _ = make_governor(tmp_path)
    submit(gov)
    run_next(gov)
    submit(gov)
    running = gov.dispatch(0).job
    submit(gov, "b")
    status = gov.status(can_admin=True)
    assert status["counts"]["by_state"] == {"success": 1, "running": 1, "pending": 1}
    assert status["counts"]["pending"] == 1 and status["counts"]["running"] == 1 and status["can_admin"]
    assert [j["prompt_id"] for j in status["running"]] == [running.prompt_id]
    health = gov.health()
    assert health["ok"] and health["pending"] == 1 and health["running"] == 1
    snapshot = gov.metrics_snapshot()
    assert snapshot["counts"] == {("running", "normal"): 1, ("pending", "normal"): 1} and snapshot["stuck"] == 0
