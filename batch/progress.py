"""Progress for people (a tqdm bar with counts, the next photo's place in the queue, throughput)
and for machines (``--json``: one JSON object per line and event on stdout)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

STATES = ("queued", "running", "done", "failed")


class Progress:
    """Receives the runner's events. ``event(kind, file, **fields)`` where kind is one of
    ``skipped``, ``submitted``, ``attached``, ``queued``, ``running``, ``done``, ``failed``,
    ``bad_input``, ``waiting`` (server busy or away: ``why``, ``retry_in_s``)."""

    def __init__(self, total: int, *, as_json: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.state: dict[str, str] = {}  # file -> queued | running | done | failed
        self.queue_info: dict[str, tuple[int | None, float | None]] = {}
        self.finished_now = 0  # results written by this run (throughput)
        self.note = ""
        self.bar = None if as_json else tqdm(total=total, unit="photo", dynamic_ncols=True, file=sys.stderr,
                                             smoothing=0.1)

    def event(self, kind: str, file: str = "", **fields: Any) -> None:
        if kind in ("submitted", "attached", "queued"):
            self.state[file] = "queued"
            if "position" in fields:
                self.queue_info[file] = (fields.get("position"), fields.get("eta_s"))
        elif kind == "running":
            self.state[file] = "running"
            self.queue_info.pop(file, None)
        elif kind in ("done", "skipped"):
            self.state[file] = "done"
            self.queue_info.pop(file, None)
            self.finished_now += kind == "done"
        elif kind in ("failed", "bad_input"):
            self.state[file] = "failed"
            self.queue_info.pop(file, None)
        if kind == "waiting":
            self.note = f"{fields.get('why')}, retrying in {fields.get('retry_in_s', 0):.0f} s"
        elif kind in ("done", "running", "submitted", "attached"):
            self.note = ""
        if self.as_json:
            self.stream.write(json.dumps({"event": kind, "file": file, "t": round(time.time(), 3), **fields},
                                         default=str) + "\n")
            self.stream.flush()
        else:
            self._draw(kind in ("done", "skipped", "failed", "bad_input"))

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.state.values() if v == s) for s in STATES}

    def _draw(self, advanced: bool) -> None:
        assert self.bar is not None
        c = self.counts()
        parts = [f"done {c['done']}", f"queued {c['queued']}", f"running {c['running']}", f"failed {c['failed']}"]
        ahead = [info for info in self.queue_info.values() if info[0]]
        if ahead:
            position, eta = min(ahead, key=lambda i: i[0])
            parts.append(f"next: #{position}" + (f" ~{eta:.0f}s" if eta is not None else ""))
        elapsed = time.monotonic() - self.started
        if self.finished_now and elapsed > 0:
            parts.append(f"{self.finished_now / elapsed * 60:.1f}/min")
        if self.note:
            parts.append(self.note)
        self.bar.n = c["done"] + c["failed"]
        self.bar.set_postfix_str(" · ".join(parts), refresh=False)
        self.bar.refresh()

    def close(self, summary: dict[str, Any]) -> None:
        if self.as_json:
            self.event("summary", **summary)
        elif self.bar is not None:
            self.bar.close()
