"""The PromptQueue subclass against both queue-item shapes (0.3.75: 6-tuple, 0.3.64: 5-tuple).

The base classes here are small stand-ins written for this test with the PromptQueue methods
the adapter relies on; the real 0.3.75 class is exercised by the integration tests.
"""

from __future__ import annotations

import threading

from governor_fakes import make_governor
from restoration_governor.governor.admission import Ticket
from restoration_governor.governor.comfy_queue import build_queue_class
from restoration_governor.governor.http_admission import ADMISSION_TICKET
from restoration_governor.governor.jobs import Priority

SENSITIVE = ("auth_token_comfy_org", "api_key_comfy_org")


class Server:
    def __init__(self):
        self.updates = 0

    def queue_updated(self):
        self.updates += 1


class Status:
    def __init__(self, ok: bool, messages=()):
        self.status_str = "success" if ok else "error"
        self.messages = list(messages)

    def _asdict(self):
        return {"status_str": self.status_str, "completed": self.status_str == "success", "messages": self.messages}


class BaseQueue:
    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue = []
        self.currently_running = {}
        self.history = {}
        self.flags = {}

    def set_flag(self, name, data):
        with self.mutex:
            self.flags[name] = data
            self.not_empty.notify()


class Queue075(BaseQueue):
    def task_done(self, item_id, history_result, status, process_item=None):
        with self.mutex:
            item = self.currently_running.pop(item_id)
            if process_item is not None:
                item = process_item(item)
            self.history[item[1]] = {"prompt": item, "outputs": {}, "status": status._asdict(), **history_result}


class Queue064(BaseQueue):
    def task_done(self, item_id, history_result, status):
        with self.mutex:
            item = self.currently_running.pop(item_id)
            self.history[item[1]] = {"prompt": item, "outputs": {}, "status": status._asdict(), **history_result}


def _queue(tmp_path, base, six):
    gov, host = make_governor(tmp_path)
    q = build_queue_class(base)(Server(), gov, six, SENSITIVE)
    host.queue = q
    return gov, q


def test_six_tuple_items_round_trip_and_keep_sensitive_out_of_the_store(tmp_path):
    gov, q = _queue(tmp_path, Queue075, True)
    q.put((5, "p1", {"1": {}}, {"client_id": "c"}, ["1"], {"api_key_comfy_org": "k"}))
    assert "api_key_comfy_org" not in gov.store.get("p1").extra_data
    item, item_id = q.get(timeout=0)
    assert item[1] == "p1" and item[5] == {"api_key_comfy_org": "k"} and len(item) == 6
    q.task_done(item_id, {"outputs": {"1": {}}}, Status(True), process_item=lambda p: p[:5])
    assert q.history["p1"]["governor"]["state"] == "success"
    assert len(q.history["p1"]["prompt"]) == 5


def test_five_tuple_items_from_0_3_64(tmp_path):
    gov, q = _queue(tmp_path, Queue064, False)
    q.put((1, "p1", {"1": {}}, {"client_id": "c", "auth_token_comfy_org": "t"}, ["1"]))
    assert "auth_token_comfy_org" not in gov.store.get("p1").extra_data
    item, item_id = q.get(timeout=0)
    assert len(item) == 5 and item[3]["auth_token_comfy_org"] == "t"  # 0.3.64's worker reads it from extra_data
    q.task_done(item_id, {"outputs": {}}, Status(True))
    assert q.history["p1"]["status"]["status_str"] == "success"


def test_pending_items_are_numbered_in_run_order_and_deletable(tmp_path):
    gov, q = _queue(tmp_path, Queue075, True)
    for pid, priority in [("a", Priority.LOW), ("b", Priority.NORMAL), ("c", Priority.HIGH)]:
        token = ADMISSION_TICKET.set(Ticket(fair_key=pid, priority=priority))
        try:
            q.put((0, pid, {}, {"client_id": pid}, [], {}))
        finally:
            ADMISSION_TICKET.reset(token)
    running, pending = q.get_current_queue_volatile()
    assert running == [] and [i[1] for i in sorted(pending, key=lambda i: i[0])] == ["c", "b", "a"]
    assert q.get_tasks_remaining() == 3
    assert q.delete_queue_item(lambda i: i[1] == "b") is True
    assert [i[1] for i in q.queue] == ["c", "a"]
    assert gov.find("b").state.value == "cancelled"
    q.wipe_queue()
    assert q.get_tasks_remaining() == 0


def test_a_retried_attempt_writes_no_history_and_the_final_one_does(tmp_path):
    gov, q = _queue(tmp_path, Queue075, True)
    gov.update_config({"retry_backoff": 0})
    q.put((0, "p", {}, {"client_id": "c"}, [], {}))
    oom = [["execution_error", {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory"}]]
    item, item_id = q.get(timeout=0)
    q.task_done(item_id, {"outputs": {}}, Status(False, oom))
    assert "p" not in q.history and q.flags.get("free_memory") is True
    item, item_id = q.get(timeout=0)
    assert item[1] == "p"
    q.task_done(item_id, {"outputs": {}}, Status(True))
    assert q.history["p"]["governor"]["attempts"] == 2


def test_a_closed_memory_gate_asks_the_worker_to_unload_models(tmp_path):
    gov, q = _queue(tmp_path, Queue075, True)
    gov.update_config({"max_used_fraction": 0.01})
    q.put((0, "p", {}, {}, [], {}))
    assert q.get(timeout=0) is None
    assert q.flags == {"unload_models": True}


def test_free_memory_flags_wake_a_waiting_worker_at_once(tmp_path):
    import time

    _, q = _queue(tmp_path, Queue075, True)
    got = []
    worker = threading.Thread(target=lambda: got.append(q.get(timeout=1000)))
    started = time.monotonic()
    worker.start()
    time.sleep(0.2)
    q.set_flag("free_memory", True)  # what POST /free does
    worker.join(5)
    assert not worker.is_alive() and got == [None]
    assert time.monotonic() - started < 3


def test_interrupt_if_running_is_a_governor_cancel_and_says_whether_it_acted(tmp_path):
    gov, q = _queue(tmp_path, Queue075, True)
    interrupts = []
    gov.rt.host.interrupt = interrupts.append
    q.put((0, "run", {}, {"client_id": "c"}, [], {}))
    q.put((0, "wait", {}, {"client_id": "c"}, [], {}))
    item, item_id = q.get(timeout=0)
    assert q.interrupt_if_running("wait") is False and gov.find("wait").state.value == "pending"
    assert q.interrupt_if_running("nope") is False
    assert q.interrupt_if_running("run") is True and interrupts == ["run"]
    q.task_done(item_id, {"outputs": {}}, Status(False, [["execution_interrupted", {"node_id": "1"}]]))
    job = gov.find("run")
    assert (job.state.value, job.reason.value, job.attempts) == ("cancelled", "cancelled", 1)  # never retried
    assert gov.metrics.finished.labels("cancelled", "cancelled")._value.get() == 1


def test_items_carry_create_time_and_the_comfy_user_that_queued_them(tmp_path):
    from restoration_governor.governor.auth import OWNER_USER_KEY
    from restoration_governor.governor.http_core_guard import REQUEST_USER

    gov, q = _queue(tmp_path, Queue075, True)
    token = REQUEST_USER.set("alice")
    try:
        q.put((0, "a", {}, {"client_id": "c", OWNER_USER_KEY: "mallory"}, [], {}))
    finally:
        REQUEST_USER.reset(token)
    q.put((0, "b", {}, {"client_id": "c", OWNER_USER_KEY: "mallory", "create_time": 7}, [], {}))
    assert gov.store.get("a").extra_data[OWNER_USER_KEY] == "alice"  # never the client's own say
    assert OWNER_USER_KEY not in gov.store.get("b").extra_data
    created = {item[1]: item[3]["create_time"] for item in q.get_current_queue_volatile()[1]}
    assert created == {"a": int(gov.find("a").created_at * 1000), "b": 7}
