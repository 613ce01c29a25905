"""Start, stop, kill and restart a real ``redis-server`` for the cluster tests.

Each server gets a free loopback port and its own directory (config, AOF, log). It listens on
127.0.0.1 only, with ``protected-mode yes``, ``appendonly yes`` and ``appendfsync everysec`` (the
durability the cluster documents) and no RDB snapshots. ``restart()`` keeps the port and the
directory, so the data written to the AOF comes back. ``stop()`` is a clean ``SHUTDOWN`` (the AOF
is flushed); ``kill()`` is SIGKILL (up to the last second of writes may be lost, as in production).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .comfy_server import free_port

REDIS_SERVER = os.environ.get("RG_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServerError(RuntimeError):
    pass


class RedisServer:
    """One ``redis-server`` process. ``start()`` returns once the server answers ``PING``."""

    def __init__(self, directory: Path, *, port: int | None = None, name: str = "redis") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log_path = self.directory / f"{name}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _write_config(self) -> Path:
        config = self.directory / "redis.conf"
        config.write_text("\n".join([
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f'dir "{self.directory}"',
            f'logfile "{self.log_path}"',
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "databases 16",
        ]) + "\n")
        return config

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> RedisServer:
        if self.alive():
            return self
        if not Path(REDIS_SERVER).exists():
            raise RedisServerError(f"redis-server not found at {REDIS_SERVER}: install the `redis-server` package")
        config = self._write_config()
        self.proc = subprocess.Popen([REDIS_SERVER, str(config)], cwd=self.directory,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisServerError(f"redis-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(f"redis-server did not answer PING within {timeout:g} s:\n{self.log_tail()}")

    def ping(self) -> bool:
        """True when the server answers ``PING`` with ``+PONG`` (a raw socket: no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: Redis flushes the AOF and exits."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # redis-server treats SIGTERM as SHUTDOWN
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no flush, like a power cut of the Redis host (minus the OS page cache)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, *, hard: bool = False) -> RedisServer:
        """Stop (or kill with ``hard``) and start again on the same port and directory (the AOF is replayed)."""
        self.kill() if hard else self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
