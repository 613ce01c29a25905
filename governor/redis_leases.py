"""Concurrency slots per GPU held in Redis with a TTL: the cluster-mode twin of ``leases.LeaseManager``.

Same interface (``try_acquire(limit, prompt_id)``, ``release(lease)``, ``in_use(limit)``), so the
governor can use either. A slot is the string key ``rg:{cluster}:gpu:<gpu_key>:slot:<i>`` whose
value is ``<token>\\n<holder JSON>``, set with ``SET NX PX ttl``; ``rg:{cluster}:gpu:<gpu_key>:slots``
remembers which slot numbers were used (for ``in_use`` after ``max_concurrent`` was lowered).
``gpu_key`` is the GPU's NVML UUID, else ``<host>:<device index>`` (``gpu_identity``), so every
ComfyUI instance on one GPU shares its slots, on whatever host.

Guarantees: acquire is one script (the lowest free slot among the first ``limit``; two holders
never get the same slot); release and renew act only while the caller's random token still holds
the slot (compare-and-delete / compare-and-expire), so a holder whose slot expired cannot free or
extend someone else's. A holder that dies stops renewing and loses its slot ``ttl`` seconds later
(the file-lock version frees it at once: the OS drops the lock). If Redis is unreachable for longer
than ``ttl``, slots lapse and the GPU may be over-committed until the holders notice (``renew``
reports them lost).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .redis_jobs import key_prefix, load_script, text

log = logging.getLogger(__name__)


def gpu_identity(device_index: int = 0) -> str:
    """The GPU's NVML UUID (``GPU-…``), or ``<hostname>:<device_index>`` without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            uuid_value = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(device_index))
        finally:
            pynvml.nvmlShutdown()
        return text(uuid_value)
    except Exception:  # no NVML library, no NVIDIA driver, no such device
        return f"{socket.gethostname()}:{device_index}"


@dataclass
class RedisLease:
    slot: int
    token: str
    holder: dict[str, Any]


class RedisLeaseManager:
    """``max_concurrent`` slots of one GPU, shared by every instance that uses the same Redis and cluster.

    ``ttl`` (seconds) is how long a slot outlives its holder's last renewal; ``start_heartbeat``
    renews every ``ttl / 3`` from a daemon thread (or call ``renew()`` yourself). Methods other than
    ``release`` raise ``redis.RedisError`` when Redis cannot be reached (the heartbeat thread logs and
    retries).
    """

    def __init__(self, client: Any, cluster: str, gpu_key: str, instance_id: str, *, ttl: float = 15.0) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0 seconds")
        self.client = client
        self.instance_id = instance_id
        self.gpu_key = gpu_key
        self.ttl = ttl
        self.base = f"{key_prefix(cluster)}gpu:{gpu_key}:"
        self._acquire = load_script(client, "lease_acquire", common=False)
        self._release = load_script(client, "lease_release", common=False)
        self._renew = load_script(client, "lease_renew", common=False)
        self._list = load_script(client, "lease_list", common=False)
        self._held: dict[int, RedisLease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[RedisLease] = []  # leases a renewal found expired or taken (most recent last)

    @property
    def _ttl_ms(self) -> str:
        return str(max(1, int(self.ttl * 1000)))

    def try_acquire(self, limit: int, prompt_id: str) -> RedisLease | None:
        """Take a free slot among the first ``limit``, or None if all are held (one round trip)."""
        token = uuid.uuid4().hex
        holder = {"instance": self.instance_id, "host": socket.gethostname(), "pid": os.getpid(),
                  "prompt_id": prompt_id, "since": time.time()}
        slot = int(self._acquire(keys=[self.base + "slots"],
                                 args=[self.base, int(limit), self._ttl_ms, token + "\n" + json.dumps(holder)]))
        if slot < 0:
            return None
        lease = RedisLease(slot, token, holder)
        with self._lock:
            self._held[slot] = lease
        return lease

    def release(self, lease: RedisLease) -> None:
        """Free the slot if this lease still holds it (a lapsed lease frees nothing).

        Never raises: while Redis is unreachable the slot is no longer renewed and lapses after ``ttl``
        (an attempt that ended must be able to report, whatever Redis does).
        """
        with self._lock:
            if self._held.get(lease.slot) is lease:
                del self._held[lease.slot]
        try:
            self._release(keys=[self.base + "slots"], args=[self.base, lease.slot, lease.token])
        except Exception as e:  # redis.RedisError, OSError
            log.warning("could not free GPU slot %d of %s in Redis (%s); it lapses in %.0f s", lease.slot,
                        self.gpu_key, e, self.ttl)

    def renew(self) -> list[RedisLease]:
        """Extend every held slot by ``ttl``; return (and forget) those that were lost."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return []
        args: list[Any] = [self.base, self._ttl_ms]
        for lease in held:
            args += [lease.slot, lease.token]
        lost_slots = {int(s) for s in self._renew(keys=[self.base + "slots"], args=args)}
        lost = [lease for lease in held if lease.slot in lost_slots]
        with self._lock:
            for lease in lost:
                if self._held.get(lease.slot) is lease:
                    del self._held[lease.slot]
        for lease in lost:
            log.warning("GPU slot %d of %s (prompt %s) lapsed before it was renewed", lease.slot, self.gpu_key,
                        lease.holder.get("prompt_id"))
        self.lost += lost
        return lost

    def in_use(self, limit: int) -> list[dict[str, Any]]:
        """Slots currently held (by any instance), with their holder's note and ``ttl_s`` left."""
        held = []
        for slot, value, pttl in self._list(keys=[self.base + "slots"], args=[self.base, int(limit)]):
            note = text(value).split("\n", 1)[1] if "\n" in text(value) else "{}"
            try:
                holder = json.loads(note)
            except ValueError:
                holder = {}
            held.append({"slot": int(slot), **holder, "ttl_s": max(0, int(pttl)) / 1000})
        return held

    def held_here(self) -> list[dict[str, Any]]:
        """The slots this instance holds, from its own books (no Redis call; ``ttl_s`` None)."""
        with self._lock:
            return [{"slot": lease.slot, **lease.holder, "ttl_s": None} for lease in self._held.values()]

    # -- heartbeat --------------------------------------------------------------------------------
    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew held slots every ``interval`` seconds (default ``ttl / 3``) from a daemon thread."""
        if self._thread is not None:
            return
        period = interval or self.ttl / 3
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.renew()
                except Exception as e:  # Redis unreachable: try again next period
                    log.warning("could not renew GPU slots in Redis: %s", e)

        self._thread = threading.Thread(target=loop, name="rg-lease-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
