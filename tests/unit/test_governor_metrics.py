"""Prometheus metrics: live gauges read at scrape time (governor/metrics.py)."""

from __future__ import annotations

from governor_fakes import make_governor, run_next, submit


def _sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_queue_gauges_report_zero_series_when_the_queue_is_empty(tmp_path):
    gov, _ = make_governor(tmp_path)
    empty = gov.metrics.render().decode()
    for state in ("pending", "waiting_for_memory", "running", "stuck"):
        for priority in ("high", "normal", "low"):
            assert _sample(empty, "governor_queue_jobs", priority=priority, state=state) == 0.0
    submit(gov)
    busy = gov.metrics.render().decode()
    assert _sample(busy, "governor_queue_jobs", priority="normal", state="pending") == 1.0
    run_next(gov)
    after = gov.metrics.render().decode()
    assert _sample(after, "governor_queue_jobs", priority="normal", state="pending") == 0.0
    assert _sample(after, "governor_jobs_finished_total", outcome="success", reason="") == 1.0
