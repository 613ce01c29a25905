"""Durable job records: every admitted prompt is on disk before ComfyUI answers 200.

``JobStore`` is the interface the governor needs; ``SqliteJobStore`` keeps it in one SQLite file
(WAL, ``synchronous=NORMAL``: a committed transaction survives a killed process) in ComfyUI's user
directory. A Redis-backed store shared by several servers can implement the same interface.

Sensitive ``extra_data`` keys never reach this module: the governor strips them first.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from .jobs import Job, JobState, Priority, Reason

FINAL_STATES = tuple(s.value for s in JobState if s.final)


class JobStore(Protocol):
    def insert(self, job: Job) -> None: ...
    def update(self, job: Job) -> None: ...
    def load_queued(self) -> list[Job]: ...
    def load_running(self) -> list[Job]: ...
    def load_finished(self, limit: int) -> list[Job]: ...
    def get(self, prompt_id: str) -> Job | None: ...
    def prune_finished(self, keep: int) -> int: ...
    def max_dispatch_number(self) -> int: ...
    def max_seq(self) -> int: ...
    def kv_get(self, key: str) -> Any: ...
    def kv_set(self, key: str, value: Any) -> None: ...
    def idempotency_get(self, key: str, now: float) -> dict[str, Any] | None: ...
    def idempotency_put(self, key: str, record: dict[str, Any], expires_at: float) -> None: ...
    def idempotency_prune(self, now: float) -> None: ...
    def close(self) -> None: ...


_COLUMNS = (
    "prompt_id", "seq", "state", "priority", "tier", "lane", "vstart", "client_id", "fair_key", "number",
    "prompt", "extra_data", "outputs", "created_at", "queued_at", "started_at", "finished_at", "attempts",
    "max_attempts", "queue_timeout", "not_before", "reason", "errors", "fingerprint", "idempotency_key",
    "dispatch_number", "exec_seconds", "peak_memory",
)
_UPDATE_COLUMNS = tuple(c for c in _COLUMNS if c not in ("prompt_id", "seq", "prompt", "outputs", "created_at",
                                                          "client_id", "fair_key", "fingerprint"))

# No secondary indexes: rows are looked up by prompt_id, and the by-state scans happen at start-up
# (and a prune every 100 finished jobs). Each index would cost every dispatch and completion a write.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    prompt_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL, priority TEXT NOT NULL,
    tier INTEGER NOT NULL, lane INTEGER NOT NULL, vstart REAL NOT NULL, client_id TEXT, fair_key TEXT NOT NULL,
    number REAL, prompt TEXT NOT NULL, extra_data TEXT NOT NULL, outputs TEXT NOT NULL, created_at REAL NOT NULL,
    queued_at REAL NOT NULL, started_at REAL, finished_at REAL, attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL, queue_timeout REAL, not_before REAL, reason TEXT, errors TEXT NOT NULL,
    fingerprint TEXT, idempotency_key TEXT, dispatch_number INTEGER, exec_seconds REAL, peak_memory INTEGER
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL NOT NULL);
"""


def _row(job: Job, columns: Iterable[str]) -> list[Any]:
    out = []
    for c in columns:
        v = getattr(job, c)
        if c in ("prompt", "extra_data", "outputs", "errors"):
            v = json.dumps(v, separators=(",", ":"))
        elif c == "state":
            v = v.value
        elif c == "priority":
            v = v.label
        elif c == "reason":
            v = v.value if v else None
        out.append(v)
    return out


def _job(row: sqlite3.Row) -> Job:
    return Job(
        prompt_id=row["prompt_id"], seq=row["seq"], prompt=json.loads(row["prompt"]),
        extra_data=json.loads(row["extra_data"]), outputs=json.loads(row["outputs"]), client_id=row["client_id"],
        fair_key=row["fair_key"], priority=Priority.parse(row["priority"]), created_at=row["created_at"],
        queued_at=row["queued_at"], max_attempts=row["max_attempts"], queue_timeout=row["queue_timeout"],
        state=JobState(row["state"]), number=row["number"] or 0.0, tier=row["tier"], lane=row["lane"],
        vstart=row["vstart"], attempts=row["attempts"], not_before=row["not_before"] or 0.0,
        started_at=row["started_at"], finished_at=row["finished_at"],
        reason=Reason(row["reason"]) if row["reason"] else None, errors=json.loads(row["errors"]),
        fingerprint=row["fingerprint"] or "", idempotency_key=row["idempotency_key"],
        dispatch_number=row["dispatch_number"] or 0, exec_seconds=row["exec_seconds"],
        peak_memory=row["peak_memory"],
    )


class SqliteJobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._insert_sql = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        self._update_sql = (f"UPDATE jobs SET {', '.join(c + '=?' for c in _UPDATE_COLUMNS)} WHERE prompt_id=?")

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(params))

    def insert(self, job: Job) -> None:
        self._exec(self._insert_sql, _row(job, _COLUMNS))

    def update(self, job: Job) -> None:
        self._exec(self._update_sql, [*_row(job, _UPDATE_COLUMNS), job.prompt_id])

    def load_queued(self) -> list[Job]:
        rows = self._exec("SELECT * FROM jobs WHERE state IN ('pending', 'waiting_for_memory') "
                          "ORDER BY tier, lane, vstart, seq").fetchall()
        return [_job(r) for r in rows]

    def load_running(self) -> list[Job]:
        rows = self._exec("SELECT * FROM jobs WHERE state IN ('running', 'stuck') ORDER BY started_at").fetchall()
        return [_job(r) for r in rows]

    def load_finished(self, limit: int) -> list[Job]:
        rows = self._exec(f"SELECT * FROM jobs WHERE state IN {FINAL_STATES!r} "
                          "ORDER BY finished_at DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in reversed(rows)]

    def get(self, prompt_id: str) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE prompt_id=?", (prompt_id,)).fetchone()
        return None if row is None else _job(row)

    def prune_finished(self, keep: int) -> int:
        cur = self._exec(
            f"DELETE FROM jobs WHERE prompt_id IN (SELECT prompt_id FROM jobs WHERE state IN {FINAL_STATES!r} "
            "ORDER BY finished_at DESC LIMIT -1 OFFSET ?)", (keep,))
        return cur.rowcount

    def max_dispatch_number(self) -> int:
        row = self._exec("SELECT MAX(dispatch_number) FROM jobs").fetchone()
        return int(row[0] or 0)

    def max_seq(self) -> int:
        row = self._exec("SELECT MAX(seq) FROM jobs").fetchone()
        return int(row[0] or 0)

    def kv_get(self, key: str) -> Any:
        row = self._exec("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def kv_set(self, key: str, value: Any) -> None:
        self._exec("INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (key, json.dumps(value)))

    def idempotency_get(self, key: str, now: float) -> dict[str, Any] | None:
        row = self._exec("SELECT record, expires_at FROM idempotency WHERE key=?", (key,)).fetchone()
        if row is None or row["expires_at"] <= now:
            return None
        return json.loads(row["record"])

    def idempotency_put(self, key: str, record: dict[str, Any], expires_at: float) -> None:
        self._exec("INSERT OR REPLACE INTO idempotency(key, record, expires_at) VALUES(?, ?, ?)",
                   (key, json.dumps(record), expires_at))

    def idempotency_prune(self, now: float | None = None) -> None:
        self._exec("DELETE FROM idempotency WHERE expires_at <= ?", (now if now is not None else time.time(),))

    def close(self) -> None:
        with self._lock:
            self._db.close()
