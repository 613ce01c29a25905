"""docs/grafana-governor.json queries only metrics the governor exports, with the labels it sets."""

from __future__ import annotations

import json
import re

from governor_fakes import make_governor
from harness.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "docs" / "grafana-governor.json"
# Cluster gauges are exported only in cluster mode (governor/cluster_setup.py), not by a single server.
CLUSTER_GAUGES = {"governor_cluster_pending_jobs", "governor_cluster_running_jobs", "governor_cluster_servers_alive",
                  "governor_cluster_servers_known", "governor_cluster_redis_up"}


def _exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_every_metric_on_the_dashboard_is_exported(tmp_path):
    gov, _ = make_governor(tmp_path)
    exported = set()
    for line in gov.metrics.render().decode().splitlines():  # families are declared even before a sample
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            exported |= {"counter": {name.removesuffix("_total") + "_total"}, "histogram": {f"{name}_bucket", f"{name}_sum",
                                                                     f"{name}_count"}}.get(kind, {name})
    used = {name for expr in _exprs() for name in re.findall(r"\bgovernor_[a-z_]+", expr)}
    assert used - CLUSTER_GAUGES - exported == set()
    for family in ("governor_queue_jobs", "governor_wait_seconds_bucket", "governor_execution_seconds_bucket",
                   "governor_retries_total", "governor_gate_open", "governor_cluster_servers_alive"):
        assert family in used, family


def test_label_filters_name_real_states():
    states = {s for expr in _exprs() for group in re.findall(r'state=~"([^"]+)"', expr) for s in group.split("|")}
    assert states == {"pending", "waiting_for_memory", "running", "stuck"}
