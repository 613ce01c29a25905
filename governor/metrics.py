"""Prometheus metrics in the governor's own registry (``GET /governor/metrics``).

Counters and histograms move as events happen; gauges about the queue are read from the
governor's live counts at scrape time, so a scrape costs the same with 10 or 10,000 records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .jobs import STATE_GROUPS, Priority

LIVE_SERIES = tuple((state.value, priority.label) for group in ("queued", "active") for state in STATE_GROUPS[group]
                    for priority in Priority)
_WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
_EXEC_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class _LiveGauges:
    """Reads a snapshot from the governor at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def describe(self):
        return []

    def collect(self):
        s = self.snapshot()
        depth = GaugeMetricFamily("governor_queue_jobs", "Jobs by state and priority", labels=["state", "priority"])
        for state, priority in LIVE_SERIES:  # every series, 0 when empty: dashboards show 0, not "no data"
            depth.add_metric([state, priority], s["counts"].get((state, priority), 0))
        yield depth
        state = GaugeMetricFamily("governor_dispatch_state", "1 for the governor's current state", labels=["state"])
        for name in ("running", "paused", "draining"):
            state.add_metric([name], 1.0 if s["state"] == name else 0.0)
        yield state
        yield GaugeMetricFamily("governor_gate_open", "1 while the memory gate lets prompts start",
                                value=1.0 if s["gate_open"] else 0.0)
        yield GaugeMetricFamily("governor_stuck_jobs", "Jobs running past exec_timeout + grace", value=s["stuck"])
        mem_used = GaugeMetricFamily("governor_memory_used_bytes", "Device memory in use", labels=["source"])
        mem_total = GaugeMetricFamily("governor_memory_total_bytes", "Device memory in total", labels=["source"])
        if s.get("memory"):
            mem_used.add_metric([s["memory"]["source"]], s["memory"]["used"])
            mem_total.add_metric([s["memory"]["source"]], s["memory"]["total"])
        yield mem_used
        yield mem_total
        yield GaugeMetricFamily("governor_leases_in_use", "Concurrency slots held on this host", value=s["leases"])
        yield GaugeMetricFamily("governor_leases_limit", "max_concurrent", value=s["lease_limit"])


class GovernorMetrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.admissions = Counter("governor_admissions", "Prompts admitted", ["priority"], registry=r)
        self.rejections = Counter("governor_rejections", "Requests refused at admission", ["reason"], registry=r)
        self.finished = Counter("governor_jobs_finished", "Jobs that reached a final state", ["outcome", "reason"],
                                registry=r)
        self.retries = Counter("governor_retries", "Attempts retried, by failure class", ["failure_class"],
                               registry=r)
        self.timeouts = Counter("governor_timeouts", "Timeouts", ["kind"], registry=r)
        self.gate_waits = Counter("governor_gate_waits", "Times a prompt had to wait for memory", registry=r)
        self.gate_wait_seconds = Histogram("governor_gate_wait_seconds", "Time prompts waited for memory",
                                           buckets=_WAIT_BUCKETS, registry=r)
        self.model_releases = Counter("governor_model_releases", "Requests to ComfyUI to release cached models",
                                      ["why"], registry=r)
        self.wait_seconds = Histogram("governor_wait_seconds", "Time from admission to start (or to the end for "
                                      "jobs that never started)", ["outcome"], buckets=_WAIT_BUCKETS, registry=r)
        self.exec_seconds = Histogram("governor_execution_seconds", "Execution time of attempts", ["outcome"],
                                      buckets=_EXEC_BUCKETS, registry=r)
        self.stuck = Counter("governor_stuck_events", "Jobs marked stuck", registry=r)
        r.register(_LiveGauges(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
