"""What past runs teach: a workflow's fingerprint, its typical duration and its peak memory.

ETA follows Gradio and the ComfyUI queue packs: the median of recent durations of the same
workflow. The memory gate uses the largest recent peak of the same workflow. A workflow is the
prompt's graph shape and settings, ignoring the values that change on every run of the same
workflow (seeds, prompt text, file names), so a batch of one workflow shares one fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import deque
from typing import Any

VOLATILE_INPUTS = frozenset({
    "seed", "noise_seed", "text", "prompt", "positive", "negative", "filename_prefix", "image", "upload",
})


def workflow_fingerprint(prompt: dict[str, Any]) -> str:
    shape = []
    for node_id in sorted(prompt, key=str):
        node = prompt[node_id]
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        kept = {k: v for k, v in inputs.items() if k not in VOLATILE_INPUTS}
        shape.append([str(node_id), str(node.get("class_type")), kept])
    blob = json.dumps(shape, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode(), usedforsecurity=False).hexdigest()[:16]


class WorkflowStats:
    """Recent durations and memory peaks per fingerprint (bounded)."""

    def __init__(self, keep: int = 20, max_workflows: int = 2000) -> None:
        self.keep = keep
        self.max_workflows = max_workflows
        self._durations: dict[str, deque[float]] = {}
        self._peaks: dict[str, deque[int]] = {}
        self._recent: deque[float] = deque(maxlen=200)

    def record(self, fingerprint: str, seconds: float | None, peak_bytes: int | None) -> None:
        if seconds is not None and seconds >= 0:
            self._bucket(self._durations, fingerprint).append(seconds)
            self._recent.append(seconds)
        if peak_bytes is not None and peak_bytes >= 0:
            self._bucket(self._peaks, fingerprint, keep=5).append(peak_bytes)

    def _bucket(self, table: dict, fingerprint: str, keep: int | None = None) -> deque:
        bucket = table.get(fingerprint)
        if bucket is None:
            if len(table) >= self.max_workflows:
                table.pop(next(iter(table)))  # forget the oldest workflow
            bucket = table[fingerprint] = deque(maxlen=keep or self.keep)
        return bucket

    def expected_seconds(self, fingerprint: str) -> float | None:
        """Median of this workflow's recent runs, else of all recent runs, else unknown."""
        bucket = self._durations.get(fingerprint)
        if bucket:
            return statistics.median(bucket)
        return statistics.median(self._recent) if self._recent else None

    def peak_bytes(self, fingerprint: str) -> int | None:
        bucket = self._peaks.get(fingerprint)
        return max(bucket) if bucket else None
