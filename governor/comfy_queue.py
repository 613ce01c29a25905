"""``GovernedPromptQueue``: ComfyUI's ``PromptQueue`` contract with the governor as storage and scheduler.

put = admit, get = dispatch, task_done = complete (a retried attempt writes no history), and the
queue views ComfyUI's ``/queue`` route reads are derived from the governor. Works with the 6-tuple
queue items of 0.3.75 and the 5-tuple items of 0.3.64. The base class is passed in (ComfyUI's
``execution.PromptQueue``), so this module imports nothing from ComfyUI.
"""

from __future__ import annotations

import inspect

from . import comfy_protocol as protocol
from .auth import OWNER_USER_KEY
from .facade import Governor
from .http_admission import ADMISSION_TICKET
from .http_core_guard import REQUEST_USER
from .jobs import Job


def six_tuple_items(execution) -> bool:
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
            extra = protocol.extra_data_of(job)
            if self.six_tuple:
                return (number, job.prompt_id, job.prompt, extra, job.outputs, dict(job.sensitive))
            extra.update(job.sensitive)
            return (number, job.prompt_id, job.prompt, extra, job.outputs)

        def _pending_items(self) -> list:
            """Pending items with the numbers the governor will run them under (sorted = run order)."""
            with self.mutex:
                shared = self.governor.cluster_pending()  # cluster mode: the shared queue's order
                if shared is not None:
                    return [self.item_for(job, self.governor.dispatch_counter + rank)
                            for rank, job in enumerate(shared, start=1)]
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
            extra_data = {k: v for k, v in extra_data.items() if k != OWNER_USER_KEY}  # never the client's say
            user = REQUEST_USER.get()
            if user:  # multi-user mode: the Comfy-User that queued it owns it (auth.job_owner)
                extra_data[OWNER_USER_KEY] = user
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
                report = None if success else protocol.report_from_messages(messages)
                completion = self.governor.complete(item[1], success, report)
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

        def interrupt_if_running(self, prompt_id: str) -> bool:
            """Core 0.4x's targeted interrupt (the jobs API's cancel): a governor cancel of ``prompt_id`` if it
            is running here — reason ``cancelled``, metrics, stuck watch. Returns whether it acted."""
            with self.mutex:
                if prompt_id not in {item[1] for item in self.currently_running.values()}:
                    return False
                job = self.governor.jobs.get(prompt_id)
                if job is None or not job.state.active:
                    return False
                self.governor.cancel(prompt_id)
                return True

        def get_current_queue(self):
            return self.get_current_queue_volatile()

        def get_current_queue_volatile(self):
            with self.mutex:
                return (list(self.currently_running.values()), list(self._pending_items()))

        def get_tasks_remaining(self) -> int:
            with self.mutex:
                shared = self.governor.cluster_depth()  # cluster mode: the shared queue's length
                waiting = len(self.governor.scheduler) if shared is None else shared
                return waiting + len(self.currently_running)

        def wipe_queue(self) -> None:
            self.governor.cancel_all_queued()
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
