"""Concurrency slots shared by every ComfyUI instance that uses the same state directory.

A slot is a lock file ``leases/slot-<i>.lock`` held with an OS file lock while a prompt runs.
The operating system drops the lock the moment its holder dies (``kill -9`` included), so a
crashed instance never keeps a slot. ``max_concurrent`` is the number of slots tried; the holder
writes who it is into the file for the status page.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout


@dataclass
class Lease:
    slot: int
    lock: FileLock
    holder: dict


class LeaseManager:
    def __init__(self, directory: Path, instance_id: str) -> None:
        self.directory = directory
        self.instance_id = instance_id
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, slot: int) -> Path:
        return self.directory / f"slot-{slot}.lock"

    def _lock(self, slot: int) -> FileLock:
        # preserve_lock_file: deleting the file on release would let two holders lock two different inodes.
        return FileLock(str(self._path(slot)), timeout=0, thread_local=False, is_singleton=False,
                        preserve_lock_file=True, fallback_to_soft=False)

    def try_acquire(self, limit: int, prompt_id: str) -> Lease | None:
        """Take a free slot among the first ``limit``, or None if all are held."""
        for slot in range(limit):
            lock = self._lock(slot)
            try:
                lock.acquire()
            except Timeout:
                continue
            holder = {"instance": self.instance_id, "pid": os.getpid(), "prompt_id": prompt_id, "since": time.time()}
            self._write_holder(slot, holder)
            return Lease(slot, lock, holder)
        return None

    def release(self, lease: Lease) -> None:
        self._write_holder(lease.slot, {})
        lease.lock.release()

    def in_use(self, limit: int) -> list[dict]:
        """Slots currently held (by any instance), with their holder's note when readable."""
        held = []
        for slot in range(max(limit, self._highest_slot() + 1)):
            lock = self._lock(slot)
            try:
                lock.acquire()
            except Timeout:
                held.append({"slot": slot, **self._read_holder(slot)})
                continue
            lock.release()
        return held

    def _highest_slot(self) -> int:
        slots = [int(p.stem.split("-")[1]) for p in self.directory.glob("slot-*.lock") if p.stem[5:].isdigit()]
        return max(slots, default=-1)

    def _holder_path(self, slot: int) -> Path:
        return self.directory / f"slot-{slot}.holder.json"

    def _write_holder(self, slot: int, holder: dict) -> None:
        # A plain overwrite (no fsync, no rename): it is a note for the status page, and a torn read
        # only shows an empty holder.
        path = self._holder_path(slot)
        if holder:
            path.write_text(json.dumps(holder))
        else:
            path.unlink(missing_ok=True)

    def _read_holder(self, slot: int) -> dict:
        try:
            return json.loads(self._holder_path(slot).read_text())
        except (OSError, ValueError):
            return {}
