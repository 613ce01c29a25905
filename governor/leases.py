"""Concurrency slots shared by every ComfyUI instance that uses the same state directory.

A slot is a lock file ``slot-<i>.lock`` held with an OS file lock while a prompt runs (``flock``
on POSIX, ``msvcrt.locking`` on Windows). The operating system drops the lock the moment its
holder dies (``kill -9`` included), so a crashed instance never keeps a slot. ``max_concurrent``
is the number of slots tried. The holder writes a note about itself into the lock file (after its
first byte, the one Windows locks) for the status page.

This is a dispatch-path operation, so it is a few system calls: open, lock, write; unlock, close.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

_NOTE_OFFSET = 1  # byte 0 is the locked byte on Windows


@dataclass
class Lease:
    slot: int
    fd: int
    holder: dict


class LeaseManager:
    def __init__(self, directory: Path, instance_id: str) -> None:
        self.directory = directory
        self.instance_id = instance_id
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, slot: int) -> Path:
        return self.directory / f"slot-{slot}.lock"

    def _open(self, slot: int) -> int:
        return os.open(self._path(slot), os.O_RDWR | os.O_CREAT, 0o644)

    def try_acquire(self, limit: int, prompt_id: str) -> Lease | None:
        """Take a free slot among the first ``limit``, or None if all are held."""
        for slot in range(limit):
            fd = self._open(slot)
            if not _try_lock(fd):
                os.close(fd)
                continue
            holder = {"instance": self.instance_id, "pid": os.getpid(), "prompt_id": prompt_id, "since": time.time()}
            note = json.dumps(holder).encode()
            os.ftruncate(fd, _NOTE_OFFSET + len(note))
            os.lseek(fd, _NOTE_OFFSET, os.SEEK_SET)
            os.write(fd, note)
            return Lease(slot, fd, holder)
        return None

    def release(self, lease: Lease) -> None:
        try:
            os.ftruncate(lease.fd, 0)
            _unlock(lease.fd)
        finally:
            os.close(lease.fd)

    def in_use(self, limit: int) -> list[dict]:
        """Slots currently held (by any instance), with their holder's note when readable."""
        held = []
        for slot in range(max(limit, self._highest_slot() + 1)):
            fd = self._open(slot)
            try:
                if _try_lock(fd):
                    _unlock(fd)
                    continue
                held.append({"slot": slot, **self._read_note(slot)})
            finally:
                os.close(fd)
        return held

    def _highest_slot(self) -> int:
        slots = [int(p.stem[5:]) for p in self.directory.glob("slot-*.lock") if p.stem[5:].isdigit()]
        return max(slots, default=-1)

    def _read_note(self, slot: int) -> dict:
        try:
            with open(self._path(slot), "rb") as f:
                f.seek(_NOTE_OFFSET)
                return json.loads(f.read() or b"{}")
        except (OSError, ValueError):
            return {}
