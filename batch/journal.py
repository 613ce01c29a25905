"""What this batch already did, kept next to its results (``<out>/.restore-journal.jsonl``).

One JSON object per line, appended and flushed as things happen, so a Ctrl-C, a crash or a power
cut loses at most the line being written (a torn last line is ignored). Records are keyed by the
photo's idempotency key: ``{"key", "file", "prompt_id"}`` once submitted, then
``{"key", "status": "done", "outputs": [...]}`` once its results are on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

JOURNAL_NAME = ".restore-journal.jsonl"


class Journal:
    """Append-only record of submissions and completions; ``get(key)`` merges a key's records."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / JOURNAL_NAME
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    self.records.setdefault(record["key"], {}).update(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def get(self, key: str) -> dict[str, Any]:
        return self.records.get(key, {})

    def write(self, key: str, **fields: Any) -> None:
        record = {"key": key, **fields}
        self.records.setdefault(key, {}).update(record)
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
