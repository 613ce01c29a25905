"""Shared bits for the bench scripts: import paths, timing helpers, JSON output."""

from __future__ import annotations

import json
import statistics
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS = REPO_ROOT / "tests"


def use_repo_packages() -> None:
    """Make ``restoration_governor.*`` (the checkout) and the test harness importable."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    if "restoration_governor" not in sys.modules:
        pkg = types.ModuleType("restoration_governor")
        pkg.__path__ = [str(REPO_ROOT)]
        sys.modules["restoration_governor"] = pkg


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "n": len(ms)}


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2, sort_keys=False))


class NullHost:
    """A governor ``Host`` that drops everything: the benches measure the governor alone."""

    def send(self, *a): pass
    def queue_changed(self): pass
    def interrupt(self, *a): pass
    def job_ended_unstarted(self, *a): pass
    def delete_history(self, *a): pass
