"""Start, stop and kill a real ComfyUI server with the pack (and the test fixture nodes) installed.

Each server gets its own ``--base-directory`` (so its own user, input, output and models folders),
a free loopback port, and a log file that failing tests attach to their report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from .paths import COMFYUI_DIR, FIXTURE_NODES_DIR, PACK_FOLDER_NAME, REPO_ROOT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDied(RuntimeError):
    pass


class ComfyServer:
    """One ComfyUI process. ``start()`` returns once ``/system_stats`` answers."""

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        install_pack: bool = True,
        fixture_nodes: bool = True,
        name: str = "comfy",
    ) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.install_pack = install_pack
        self.fixture_nodes = fixture_nodes
        self.name = name
        self.log_path = self.base_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._prepare_base_dir()

    # -- layout -------------------------------------------------------------------------------
    def _prepare_base_dir(self) -> None:
        for sub in ("custom_nodes", "user", "input", "output", "temp", "models"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_FOLDER_NAME
        if self.install_pack and not link.exists():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        if not self.install_pack and link.is_symlink():
            link.unlink()
        config = self.base_dir / "extra_model_paths.yaml"
        if self.fixture_nodes:
            # ComfyUI's own tests load their testing pack the same way: a `custom_nodes:` entry.
            config.write_text(f"rg_tests:\n    custom_nodes: {FIXTURE_NODES_DIR}\n")
        elif config.exists():
            config.unlink()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def user_dir(self) -> Path:
        return self.base_dir / "user"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base_dir), "--disable-api-nodes",
            "--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}",
        ]
        if self.fixture_nodes:
            cmd += ["--extra-model-paths-config", str(self.base_dir / "extra_model_paths.yaml")]
        return cmd + self.extra_args

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> ComfyServer:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        env = os.environ.copy()
        env.update({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        env.update(self.env)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(), cwd=COMFYUI_DIR, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerDied(f"{self.name} exited with {self.proc.returncode if self.proc else None}:\n"
                                 f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def kill(self) -> None:
        """``kill -9``: no shutdown hooks, no flushes, exactly like a crash."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def restart(self, timeout: float = 180.0) -> ComfyServer:
        self.stop()
        return self.start(timeout)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- diagnostics --------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- tiny synchronous HTTP helpers (for fixtures; tests use the async client) ---------------
    def get_json(self, path: str, timeout: float = 10.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def post_json(self, path: str, body, method: str = "POST", headers: Mapping[str, str] | None = None,
                  timeout: float = 10.0):
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")


def start_all(servers: Iterable[ComfyServer]) -> None:
    """Start several servers side by side (each start imports torch: minutes in a row on 2 cores);
    raises the first failure once all have finished starting."""
    import threading

    errors: list[BaseException] = []

    def start(server: ComfyServer) -> None:
        try:
            server.start()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
