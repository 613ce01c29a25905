"""One live server per durable queue: a second start on a busy port stops before it touches the queue.

ComfyUI loads custom nodes (and so the governor, which opens ``queue-port8188.sqlite3`` and recovers
it) before it binds its port. Without this check, a second ``make run`` on a port already in use
opened the live server's queue, marked its running job as a re-run, and only then died with a raw
``OSError``. :func:`claim_instance` runs first: it checks that the port can be bound and takes an
exclusive OS lock on the queue store for the life of the process (released by the OS when the
process ends, even on ``kill -9``), and raises :class:`InstanceInUse` with the remedy otherwise.
Plain Python; nothing here imports ComfyUI.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

from filelock import FileLock, Timeout

_held: dict[str, FileLock] = {}  # store path -> its lock, held until the process exits


class InstanceInUse(SystemExit):
    """Another server holds this port or this queue store. A ``SystemExit``: ComfyUI cannot run usefully
    (its port is taken, or its queue belongs to a live server), and its custom-node loader would
    swallow an ``Exception`` and go on to fail on the port with a raw traceback."""


def port_is_free(address: str, port: int) -> bool:
    """Whether ``(address, port)`` can be bound now, as ComfyUI's server will (``SO_REUSEADDR`` on POSIX)."""
    host = address.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # ComfyUI will report an address it cannot resolve itself
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)):
                return False
            return True  # other bind problems (permissions, no such address) are ComfyUI's to report
    return True


def claim_instance(store_path: Path, listen: str | None, port: int | None, instance_id: str) -> None:
    """Refuse to start when ``port`` is taken or ``store_path`` is held by a live server; else hold it.

    ``listen`` is ComfyUI's ``--listen`` value (comma-separated addresses), ``port`` its ``--port``.
    Raises :class:`InstanceInUse` with a message that starts with the remedy.
    """
    if port is not None:
        for address in (listen or "127.0.0.1").split(","):
            if address.strip() and not port_is_free(address.strip(), port):
                raise InstanceInUse(
                    f"port {port} is in use — use `PORT=…` (e.g. `make run PORT={port + 2}`, or ComfyUI's "
                    f"--port {port + 2}) to start a second server; another ComfyUI (or another program) already "
                    f"listens on {address.strip()}:{port}. Its queue ({store_path}) was not touched."
                )
    key = str(store_path)
    if key in _held:
        return
    store_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(store_path) + ".lock", timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise InstanceInUse(
            f"the queue {store_path} belongs to another running server (instance '{instance_id}') — give each "
            f"server its own port or GOVERNOR_INSTANCE_ID; this start stopped before touching that queue."
        ) from None
    _held[key] = lock


def release_all() -> None:
    """Drop every held store lock (tests; a real server keeps them until it exits)."""
    while _held:
        _, lock = _held.popitem()
        with contextlib.suppress(OSError):
            lock.release()
