"""Binds the governor to a running ComfyUI: the one module here that imports ComfyUI.

At pack import (inside ComfyUI's start-up, before the worker thread exists) ``install``:
* replaces ``PromptServer.instance.prompt_queue`` with a ``PromptQueue`` subclass whose storage
  is the governor (put = admit, get = dispatch, task_done = complete/retry);
* appends the admission middleware and registers ``/governor/...`` routes (``/api`` copies come
  from ComfyUI);
* on the app's start-up signal, re-validates and requeues what the last run left, then starts the
  watchdog thread.
Works with the 6-tuple queue items of 0.3.75 and the 5-tuple items of 0.3.64.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from . import cluster_setup, comfy_cluster_relay
from . import comfy_protocol as protocol
from .admission import prompt_digest
from .comfy_features import core_job_id_rule, dynamic_vram_evictable
from .comfy_jobs_routes import register_jobs_routes
from .comfy_queue import build_queue_class, six_tuple_items
from .config import ConfigFile
from .facade import Governor
from .host import Host
from .http_admission import make_middleware
from .http_api import register_routes
from .http_core_guard import check_cancel, job_view, make_guard_middleware
from .instance_lock import claim_instance
from .jobs import Job
from .leases import LeaseManager
from .memory import build_probe_chain
from .store import SqliteJobStore

log = logging.getLogger("restoration_governor.adapter")

WATCHDOG_INTERVAL = 0.2


def _comfy(name: str):
    return importlib.import_module(name)


class ComfyHost(Host):
    """The governor's window on ComfyUI."""

    def __init__(self, server) -> None:
        self.server = server
        self.queue = None  # set once the governed queue exists

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        self.server.send_sync(event, data, sid)

    def queue_changed(self) -> None:
        self.server.queue_updated()

    def interrupt(self, prompt_id: str) -> None:
        with self.queue.mutex:  # the worker cannot start the next prompt while we hold this
            running = {item[1] for item in self.queue.currently_running.values()}
            if prompt_id in running:
                _comfy("comfy.model_management").interrupt_current_processing(True)

    def job_ended_unstarted(self, job: Job, error: dict[str, Any], governor_info: dict[str, Any]) -> None:
        status, events = protocol.unstarted_failure(job, error)
        limit = getattr(_comfy("execution"), "MAXIMUM_HISTORY_SIZE", 10000)
        with self.queue.mutex:
            history = self.queue.history
            if len(history) > limit:
                history.pop(next(iter(history)))
            history[job.prompt_id] = protocol.history_entry(job, status, governor_info)
        if job.client_id:  # plain ComfyUI clients wait for these
            for event, data in events:
                self.server.send_sync(event, data, job.client_id)
        self.server.queue_updated()

    def delete_history(self, prompt_id: str) -> None:
        with self.queue.mutex:
            self.queue.history.pop(prompt_id, None)


def _paths(folder_paths) -> tuple[Path, Path, str]:
    user_dir = Path(folder_paths.get_user_directory())
    own_dir = user_dir / "restoration-governor"
    state_dir = Path(os.environ.get("GOVERNOR_STATE_DIR") or own_dir)
    instance = os.environ.get("GOVERNOR_INSTANCE_ID")
    if not instance:
        try:
            instance = f"port{_comfy('comfy.cli_args').args.port}"
        except Exception:
            instance = "default"
    safe = _safe_name(instance)
    return own_dir / f"queue-{safe}.sqlite3", state_dir, safe


def _safe_name(name: str) -> str:
    """``name`` with every character a file name may not safely hold replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _cuda_device() -> tuple[int | None, str | None]:
    try:
        mm = _comfy("comfy.model_management")
        device = mm.get_torch_device()
        if getattr(device, "type", None) != "cuda":
            return None, None
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        return index, (str(uuid) if uuid else None)
    except Exception as e:
        log.info("no CUDA device for the memory gate (%s); using system RAM", e)
        return None, None


def install(prompt_server) -> Governor:
    execution = _comfy("execution")
    folder_paths = _comfy("folder_paths")
    queue_db, state_dir, instance = _paths(folder_paths)
    cli = getattr(_comfy("comfy.cli_args"), "args", None)
    # Before the store is opened: a second start on a busy port must not recover the live server's queue.
    claim_instance(queue_db, getattr(cli, "listen", None), getattr(cli, "port", None), instance)
    host = ComfyHost(prompt_server)
    cuda_index, cuda_uuid = _cuda_device()
    # Slots are per GPU: instances sharing the state directory but not the card do not block each other.
    device_key = _safe_name(f"gpu-{cuda_uuid}" if cuda_uuid else (f"cuda{cuda_index}" if cuda_index is not None
                                                                   else "cpu"))
    ctx, redis_leases, gpu = cluster_setup.build(state_dir, getattr(cli, "listen", None), getattr(cli, "port", None),
                                                 cuda_index, cuda_uuid)
    governor = Governor(
        config_file=ConfigFile(state_dir / "config.json"),
        store=SqliteJobStore(queue_db),
        leases=redis_leases or LeaseManager(state_dir / "leases" / device_key, instance),
        probe=build_probe_chain(cuda_index, cuda_uuid, dynamic_vram_evictable()),
        host=host,
        instance_id=instance,
    )
    six = six_tuple_items(execution)
    sensitive_keys = tuple(getattr(execution, "SENSITIVE_EXTRA_DATA_KEYS", ("auth_token_comfy_org",
                                                                           "api_key_comfy_org")))
    queue_cls = build_queue_class(execution.PromptQueue)
    old = prompt_server.prompt_queue
    queue = queue_cls(prompt_server, governor, six, sensitive_keys)
    queue.history, queue.flags = old.history, old.flags
    host.queue = queue
    prompt_server.prompt_queue = queue
    for item in list(getattr(old, "queue", [])):  # nothing is queued this early, but never drop a prompt
        queue.put(item)

    _hide_retried_attempt_events(prompt_server, governor)
    prompt_server.app.middlewares.append(make_middleware(governor, core_job_id_rule()))
    multi_user = bool(getattr(cli, "multi_user", False))
    own_jobs = register_jobs_routes(prompt_server.routes, queue,  # only where the core lacks /api/jobs
                                    may_cancel=partial(check_cancel, governor, multi_user=multi_user),
                                    view=partial(job_view, governor, multi_user=multi_user))
    prompt_server.app.middlewares.append(make_guard_middleware(governor, multi_user=multi_user,
                                                               core_jobs=not own_jobs))
    register_routes(prompt_server.routes, governor)
    cluster_setup.register_cluster_route(prompt_server.routes, governor)
    if ctx is not None:
        cluster_setup.attach(governor, ctx, gpu)
        comfy_cluster_relay.install(prompt_server, ctx)  # events, history and /view of prompts run elsewhere
    watchdog = _Watchdog(governor)

    async def on_startup(_app) -> None:
        await _recover(governor, execution)
        if ctx is not None and redis_leases is not None:
            classes = frozenset(getattr(_comfy("nodes"), "NODE_CLASS_MAPPINGS", {}))
            cluster_setup.start(governor, classes, redis_leases)
        watchdog.start()

    async def on_shutdown(_app) -> None:
        watchdog.stop()
        if ctx is not None and redis_leases is not None:
            cluster_setup.stop(governor, redis_leases)

    prompt_server.app.on_startup.append(on_startup)
    prompt_server.app.on_shutdown.append(on_shutdown)
    prompt_server.restoration_governor = governor
    log.info("restoration-governor: queue governed (instance %s, queue %s, state %s)", instance,
             queue_db if ctx is None else f"{ctx.describe()}; local records {queue_db.name}", state_dir)
    return governor


def _hide_retried_attempt_events(prompt_server, governor: Governor) -> None:
    """Filter ComfyUI's events so a retried attempt does not look like the prompt's end to its client.

    What passes goes to ``governed_send_sync.downstream`` (ComfyUI's ``send_sync``); the cluster
    relay (``comfy_cluster_relay``) hooks in there, below the filter.
    """

    def governed_send_sync(event, data, sid=None):
        if protocol.is_error_event(event, data):
            protocol.shorten_exception_type(data)
            if governor.hide_failed_attempt(data["prompt_id"], protocol.report_from_error_event(data)):
                return
        elif protocol.is_prompt_end_event(event, data) and governor.is_requeued(data["prompt_id"]):
            return
        governed_send_sync.downstream(event, data, sid)

    governed_send_sync.downstream = prompt_server.send_sync
    prompt_server.send_sync = governed_send_sync


async def _recover(governor: Governor, execution) -> None:
    started = time.perf_counter()
    running, queued = governor.load_unfinished()
    invalid: dict[str, str] = {}
    verdicts: dict[str, str | None] = {}
    for job in [*running, *queued]:
        digest = prompt_digest(job.prompt)
        if digest not in verdicts:
            try:
                valid = await execution.validate_prompt(job.prompt_id, job.prompt, None)
                verdicts[digest] = None if valid[0] else _validation_message(valid)
            except Exception as e:  # a broken prompt must not stop the recovery of the others
                verdicts[digest] = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0)
        if verdicts[digest] is not None:
            invalid[job.prompt_id] = verdicts[digest]
    summary = governor.recover(running, queued, invalid)
    log.info("restoration-governor: recovered the queue in %.2f s: %s", time.perf_counter() - started, summary)


def _validation_message(valid) -> str:
    error = valid[1] if len(valid) > 1 else None
    if isinstance(error, dict):
        return f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".strip(": ")
    return str(error or "invalid prompt")


class _Watchdog:
    """Calls ``governor.tick()`` a few times a second on its own daemon thread."""

    def __init__(self, governor: Governor) -> None:
        self.governor = governor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governor-watchdog", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(WATCHDOG_INTERVAL):
            try:
                self.governor.tick()
            except Exception:
                log.exception("governor watchdog tick failed")
