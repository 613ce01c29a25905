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

from .jobs import STATE_GROUPS, Job, JobState, Priority, Reason

FINAL_STATES = tuple(s.value for s in STATE_GROUPS["final"])
QUEUED_STATES = tuple(s.value for s in STATE_GROUPS["queued"])
ACTIVE_STATES = tuple(s.value for s in STATE_GROUPS["active"])


class JobStore(Protocol):
    """Where the governor keeps its job records; a second implementation (Redis) follows this text.

    Calls come from several threads (HTTP handlers, ComfyUI's worker, the watchdog), always with
    the governor's lock held, so an implementation must be thread-safe but need not order
    concurrent calls itself. **Durable on return** means: the change is committed and survives a
    killed process (``kill -9``) of this or any other client of the store; every mutating method
    below is durable on return. A method that cannot make its change durable raises (the governor
    then refuses the admission, or logs and goes on); it never returns having silently dropped it.
    Job records are written whole (``insert``) or by the mutable fields (``update``); the
    governor never hands over ComfyUI's sensitive ``extra_data`` keys (``Job.sensitive`` is not
    stored), and nothing else of ``Job`` is volatile.
    """

    def insert(self, job: Job) -> None:
        """Store a newly admitted job, every persisted field; durable on return (``/prompt`` answers
        200 only after this). Raises if ``job.prompt_id`` is already stored."""

    def update(self, job: Job) -> None:
        """Overwrite the mutable fields of a stored job (``UPDATE_FIELDS``: state, priority, tier, lane,
        vstart, number, extra_data, queued_at, started_at, finished_at, attempts, max_attempts,
        queue_timeout, not_before, reason, errors, idempotency_key, dispatch_number, exec_seconds,
        peak_memory); the others (``FIXED_FIELDS``: prompt_id, seq, prompt, outputs, created_at,
        client_id, fair_key, fingerprint) never change after ``insert`` and are left alone, so the
        prompt survives ``Job.prompt`` being emptied in memory. Durable on return; a no-op for an
        unknown prompt_id."""

    def load_queued(self) -> list[Job]:
        """Jobs in a queued state (pending, waiting_for_memory), in dispatch order: sorted by
        ``Job.sort_key()`` = (tier, lane, vstart, seq), ascending. Recovery requeues them in this
        order keeping their tags, so the order after a restart is the order before it."""

    def load_running(self) -> list[Job]:
        """Jobs in an active state (running, stuck), oldest ``started_at`` first."""

    def load_finished(self, limit: int) -> list[Job]:
        """The ``limit`` most recently finished jobs (final states, by ``finished_at``), oldest first."""

    def get(self, prompt_id: str) -> Job | None:
        """The whole stored record (prompt included), or None."""

    def prune_finished(self, keep: int) -> int:
        """Delete finished jobs but the ``keep`` most recent (by ``finished_at``); returns how many went.
        Queued and running jobs are never pruned."""

    def max_dispatch_number(self) -> int:
        """The highest ``dispatch_number`` stored, 0 when none: numbering goes on after a restart."""

    def max_seq(self) -> int:
        """The highest ``seq`` stored, 0 when none: admission order goes on after a restart."""

    def kv_get(self, key: str) -> Any:
        """A small JSON value stored under ``key`` (``dispatch_state``), or None."""

    def kv_set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` (replacing it); durable on return."""

    def idempotency_get(self, key: str, now: float) -> dict[str, Any] | None:
        """The answer recorded for an Idempotency-Key, if its record has not expired at ``now``.

        TTL meaning: a record put with ``expires_at`` answers every lookup with ``now < expires_at``
        and none after (``expires_at = time of the first answer + idempotency_ttl``): within the
        TTL a repeat gets the first answer back; after it, the key is free and starts a new prompt.
        An expired record may still be stored until ``idempotency_prune``; it must read as absent.
        """

    def idempotency_put(self, key: str, record: dict[str, Any], expires_at: float) -> None:
        """Record the answer for ``key`` until ``expires_at`` (wall-clock seconds), replacing any
        earlier record of the key; durable on return."""

    def idempotency_prune(self, now: float) -> None:
        """Delete the records expired at ``now`` (housekeeping; lookups already ignore them)."""

    def forget(self, prompt_id: str) -> None:
        """Delete a job's record (cluster mode: a pending job moved to the shared queue)."""

    def close(self) -> None:
        """Release the store's resources; no call follows."""

_COLUMNS = (
    "prompt_id", "seq", "state", "priority", "tier", "lane", "vstart", "client_id", "fair_key", "number",
    "prompt", "extra_data", "outputs", "created_at", "queued_at", "started_at", "finished_at", "attempts",
    "max_attempts", "queue_timeout", "not_before", "reason", "errors", "fingerprint", "idempotency_key",
    "dispatch_number", "exec_seconds", "peak_memory",
)
FIXED_FIELDS = ("prompt_id", "seq", "prompt", "outputs", "created_at", "client_id", "fair_key", "fingerprint")
UPDATE_FIELDS = tuple(c for c in _COLUMNS if c not in FIXED_FIELDS)  # what ``JobStore.update`` writes

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
        self._update_sql = (f"UPDATE jobs SET {', '.join(c + '=?' for c in UPDATE_FIELDS)} WHERE prompt_id=?")

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(params))

    def insert(self, job: Job) -> None:
        self._exec(self._insert_sql, _row(job, _COLUMNS))

    def update(self, job: Job) -> None:
        self._exec(self._update_sql, [*_row(job, UPDATE_FIELDS), job.prompt_id])

    def load_queued(self) -> list[Job]:
        rows = self._exec(f"SELECT * FROM jobs WHERE state IN {QUEUED_STATES!r} "
                          "ORDER BY tier, lane, vstart, seq").fetchall()
        return [_job(r) for r in rows]

    def load_running(self) -> list[Job]:
        rows = self._exec(f"SELECT * FROM jobs WHERE state IN {ACTIVE_STATES!r} ORDER BY started_at").fetchall()
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

    def forget(self, prompt_id: str) -> None:
        self._exec("DELETE FROM jobs WHERE prompt_id = ?", (prompt_id,))

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
