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
import hashlib
import importlib
import inspect
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .config import ConfigFile
from .core import Governor, Host
from .http_api import ADMISSION_TICKET, make_middleware, register_routes
from .instance_lock import claim_instance
from .jobs import Job
from .leases import LeaseManager
from .memory import build_probe_chain
from .store import SqliteJobStore

log = logging.getLogger("restoration_governor.adapter")

WATCHDOG_INTERVAL = 0.2


def _comfy(name: str):
    return importlib.import_module(name)


def _six_tuple_items(execution) -> bool:
    """0.3.75 queue items carry a 6th element (sensitive extra_data); 0.3.64 items have 5."""
    return "process_item" in inspect.signature(execution.PromptQueue.task_done).parameters


def build_queue_class(base: type):
    class GovernedPromptQueue(base):  # type: ignore[misc, valid-type]
        """ComfyUI's PromptQueue contract, with the governor as the storage and the scheduler."""

        def __init__(self, server, governor: Governor, six_tuple: bool, sensitive_keys: tuple[str, ...]) -> None:
            super().__init__(server)
            self.governor = governor
            self.six_tuple = six_tuple
            self.sensitive_keys = sensitive_keys
            self.mutex = governor.lock  # one lock and one condition for queue and governor
            self.not_empty = governor.cond
            self._pending_cache: tuple[tuple[int, int], list] = ((-1, -1), [])

        # ComfyUI code (and some packs) read ``queue``; it is derived from the governor.
        @property
        def queue(self) -> list:
            return list(self._pending_items())

        @queue.setter
        def queue(self, value) -> None:  # PromptQueue.__init__ assigns []
            if value:
                raise AttributeError("the governed queue cannot be replaced")

        def item_for(self, job: Job, number: float) -> tuple:
            extra = dict(job.extra_data)
            if self.six_tuple:
                return (number, job.prompt_id, job.prompt, extra, job.outputs, dict(job.sensitive))
            extra.update(job.sensitive)
            return (number, job.prompt_id, job.prompt, extra, job.outputs)

        def _pending_items(self) -> list:
            """Pending items with the numbers the governor will run them under (sorted = run order)."""
            with self.mutex:
                stamp = (self.governor.scheduler.version, self.governor.dispatch_counter)
                if self._pending_cache[0] != stamp:
                    base_number = self.governor.dispatch_counter
                    items = [self.item_for(job, base_number + rank)
                             for rank, job in enumerate(self.governor.scheduler, start=1)]
                    self._pending_cache = (stamp, items)
                return self._pending_cache[1]

        def put(self, item) -> None:
            number, prompt_id, prompt, extra_data, outputs = item[:5]
            if len(item) > 5:
                sensitive = dict(item[5])
            else:
                extra_data = dict(extra_data)
                sensitive = {k: extra_data.pop(k) for k in self.sensitive_keys if k in extra_data}
            self.governor.admit(number, prompt_id, prompt, extra_data, outputs, sensitive, ADMISSION_TICKET.get())
            self.server.queue_updated()

        def get(self, timeout=None):
            result = self.governor.dispatch(timeout, wake=lambda: bool(self.flags))
            if result.release_models:
                # The worker handles flags right after get() returns: it unloads the models, then asks again.
                self.set_flag("unload_models", True)
                return None
            job = result.job
            if job is None:
                return None
            with self.mutex:
                item = self.item_for(job, job.dispatch_number)
                item_id = self.task_counter
                self.currently_running[item_id] = item
                self.task_counter += 1
            self.server.queue_updated()
            return (item, item_id)

        def task_done(self, item_id, history_result, status, process_item=None) -> None:
            with self.mutex:
                item = self.currently_running.get(item_id)
                if item is None:
                    return
                success = status is not None and status.status_str == "success"
                messages = list(status.messages) if status is not None else []
                completion = self.governor.complete(item[1], success, messages)
                if completion.write_history:
                    if self.six_tuple:
                        super().task_done(item_id, history_result, status, process_item=process_item)
                    else:
                        super().task_done(item_id, history_result, status)
                    entry = self.history.get(item[1])
                    if entry is not None and completion.governor_info:
                        entry["governor"] = completion.governor_info
                else:  # the attempt will be retried: no history entry until the final outcome
                    self.currently_running.pop(item_id, None)
                    self.server.queue_updated()
                if completion.free_memory:
                    self.flags["free_memory"] = True

        def get_current_queue(self):
            return self.get_current_queue_volatile()

        def get_current_queue_volatile(self):
            with self.mutex:
                return (list(self.currently_running.values()), list(self._pending_items()))

        def get_tasks_remaining(self) -> int:
            with self.mutex:
                return len(self.governor.scheduler) + len(self.currently_running)

        def wipe_queue(self) -> None:
            self.governor.cancel_where(lambda job: True, first_only=False)
            self.server.queue_updated()

        def delete_queue_item(self, function) -> bool:
            with self.mutex:
                for item in self._pending_items():
                    if function(item):
                        self.governor.cancel(item[1])
                        self.server.queue_updated()
                        return True
            return False

    return GovernedPromptQueue


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

    def release_models(self) -> None:
        self.queue.set_flag("unload_models", True)

    def write_history(self, job: Job, status: dict[str, Any], governor_info: dict[str, Any]) -> None:
        execution = _comfy("execution")
        limit = getattr(execution, "MAXIMUM_HISTORY_SIZE", 10000)
        with self.queue.mutex:
            history = self.queue.history
            if len(history) > limit:
                history.pop(next(iter(history)))
            history[job.prompt_id] = {
                "prompt": (job.dispatch_number or job.number, job.prompt_id, job.prompt or {}, job.extra_data,
                           job.outputs),
                "outputs": {}, "status": status, "meta": {}, "governor": governor_info,
            }
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
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in instance)
    return own_dir / f"queue-{safe}.sqlite3", state_dir, safe


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
    device_key = f"gpu-{cuda_uuid}" if cuda_uuid else (f"cuda{cuda_index}" if cuda_index is not None else "cpu")
    device_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in device_key)
    governor = Governor(
        config_file=ConfigFile(state_dir / "config.json"),
        store=SqliteJobStore(queue_db),
        leases=LeaseManager(state_dir / "leases" / device_key, instance),
        probe=build_probe_chain(cuda_index, cuda_uuid),
        host=host,
        instance_id=instance,
    )
    six = _six_tuple_items(execution)
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
    prompt_server.app.middlewares.append(make_middleware(governor))
    register_routes(prompt_server.routes, governor)
    watchdog = _Watchdog(governor)

    async def on_startup(_app) -> None:
        await _recover(governor, execution)
        watchdog.start()

    async def on_shutdown(_app) -> None:
        watchdog.stop()

    prompt_server.app.on_startup.append(on_startup)
    prompt_server.app.on_shutdown.append(on_shutdown)
    prompt_server.restoration_governor = governor
    log.info("restoration-governor: queue governed (instance %s, queue %s, state %s)", instance, queue_db, state_dir)
    return governor


def _hide_retried_attempt_events(prompt_server, governor: Governor) -> None:
    """Filter ComfyUI's events so a retried attempt does not look like the prompt's end to its client."""
    send_sync = prompt_server.send_sync

    def governed_send_sync(event, data, sid=None):
        if event in ("execution_error", "executing") and isinstance(data, dict) \
                and governor.hides_attempt_event(event, data):
            return
        send_sync(event, data, sid)

    prompt_server.send_sync = governed_send_sync


async def _recover(governor: Governor, execution) -> None:
    started = time.perf_counter()
    running, queued = governor.load_unfinished()
    invalid: dict[str, str] = {}
    verdicts: dict[str, str | None] = {}
    for job in [*running, *queued]:
        digest = hashlib.sha1(json.dumps(job.prompt, sort_keys=True, default=str).encode(),
                              usedforsecurity=False).hexdigest()
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
