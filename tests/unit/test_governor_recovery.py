"""Recovery after a restart (governor/recovery.py)."""

from __future__ import annotations

from governor_fakes import crash, make_governor, submit
from restoration_governor.governor.jobs import Reason


def test_restart_restores_queue_order_and_reruns_the_running_prompt(tmp_path):
    gov, _ = make_governor(tmp_path, retry_attempts=1)
    jobs = [submit(gov, c) for c in "AABBC"]
    running = gov.dispatch(0).job
    expected = [j.prompt_id for j in gov.scheduler]
    crash(gov)
    again, _ = make_governor(tmp_path, retry_attempts=1)
    restored = [j.prompt_id for j in again.scheduler]
    assert restored == [running.prompt_id, *expected]
    rerun = again.jobs[running.prompt_id]
    assert rerun.attempts == 1 and rerun.errors[-1]["reason"] == "server_restart"
    assert len(jobs) == 5
    # crash it again while it runs its second (last allowed) attempt: now it is failed, not rerun
    assert again.dispatch(0).job.prompt_id == running.prompt_id
    crash(again)
    third, _ = make_governor(tmp_path, retry_attempts=1)
    assert third.find(running.prompt_id).reason is Reason.MAX_ATTEMPTS
    assert [j.prompt_id for j in third.scheduler] == expected


def test_invalid_prompts_after_restart_are_recorded_as_failed(tmp_path):
    gov, _ = make_governor(tmp_path)
    bad, good = submit(gov), submit(gov)
    del gov
    again, host = make_governor(tmp_path, ready=False)
    again.recover(*again.load_unfinished(), {bad.prompt_id: "node type Missing not found"})
    assert again.find(bad.prompt_id).reason is Reason.INVALID_ON_RESTORE
    assert "Missing" in host.history[bad.prompt_id]["status"]["messages"][0][1]["exception_message"]
    assert [j.prompt_id for j in again.scheduler] == [good.prompt_id]
