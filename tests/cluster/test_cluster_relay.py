"""The cluster relay on a real Redis: what server B sends for a prompt server A admitted reaches A's client.

Two relays (A and B) share one Redis; the ComfyUI side is replaced by recording send functions, so
what is asserted is exactly what each server would put on its WebSockets and into its history.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pytest
import redis
from PIL import Image

from governor.cluster_relay import RelayPublisher, RelayRoutes, RelaySubscriber, fetch_history, stream_key
from governor.cluster_relay_view import file_key
from governor.comfy_cluster_relay import PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE, ClusterRelay, encode_binary
from governor.redis_jobs import key_prefix


@dataclass
class FakeContext:
    redis: Any
    prefix: str
    server_id: str
    origins: dict[str, str] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def origin_of(self, prompt_id: str) -> str | None:
        self.lookups.append(prompt_id)
        return self.origins.get(prompt_id)


class Server:
    """One fake ComfyUI server: what it sent to its clients and what its history holds."""

    def __init__(self, client, prefix: str, server_id: str, origins: dict[str, str]) -> None:
        self.ctx = FakeContext(client, prefix, server_id, origins)
        self.sent: list[tuple[Any, Any, str | None]] = []
        self.history: dict[str, dict] = {}
        self.arrived = threading.Event()
        self.relay = ClusterRelay(self.ctx, self._send, store_history=self._store)

    def _send(self, event, data, sid=None) -> None:
        self.sent.append((event, data, sid))
        self.arrived.set()

    def _store(self, prompt_id: str, entry: dict) -> None:
        self.history[prompt_id] = entry
        self.arrived.set()

    def subscriber(self) -> RelaySubscriber:
        return RelaySubscriber(self.ctx.redis, self.ctx.prefix, self.ctx.server_id, on_event=self.relay.deliver,
                               on_history=lambda pid, entry, _s: self._store(pid, entry))


@pytest.fixture
def pair(redis_client, cluster_name):
    prefix = key_prefix(cluster_name)
    origins = {"remote-1": "A", "local-1": "B", "a-own": "A"}
    a, b = Server(redis_client, prefix, "A", origins), Server(redis_client, prefix, "B", origins)
    return a, b, a.subscriber()


def _run_remote_prompt(b: Server) -> None:
    sid = "client-7"
    b.relay.relay_send("execution_start", {"prompt_id": "remote-1", "timestamp": 1}, sid)
    b.relay.relay_send("executing", {"node": "3", "display_node": "3", "prompt_id": "remote-1"}, sid)
    b.relay.relay_send("progress", {"value": 2, "max": 4, "prompt_id": "remote-1", "node": "3"}, sid)
    b.relay.relay_send("governor.job", {"prompt_id": "remote-1", "event": "state", "state": "running"}, sid)
    b.relay.relay_send("executed", {"node": "9", "display_node": "9", "prompt_id": "remote-1",
                                    "output": {"images": [{"filename": "r_00001_.png", "subfolder": "",
                                                           "type": "output"}]}}, sid)
    b.relay.relay_send("execution_success", {"prompt_id": "remote-1", "timestamp": 2}, sid)


def test_every_event_of_a_remote_prompt_reaches_the_admitting_server_with_its_sid_in_order(pair):
    a, b, sub = pair
    sub.poll()  # A is listening before B runs the prompt
    _run_remote_prompt(b)
    b.relay.relay_send("status", {"status": {"exec_info": {"queue_remaining": 0}}}, None)  # B's own queue
    assert sub.poll() == 6
    assert [(e, d.get("prompt_id"), s) for e, d, s in a.sent] == [
        ("execution_start", "remote-1", "client-7"), ("executing", "remote-1", "client-7"),
        ("progress", "remote-1", "client-7"), ("governor.job", "remote-1", "client-7"),
        ("executed", "remote-1", "client-7"), ("execution_success", "remote-1", "client-7")]
    assert a.sent[4][1]["output"]["images"][0]["filename"] == "r_00001_.png"
    assert a.sent[2][1] == {"value": 2, "max": 4, "prompt_id": "remote-1", "node": "3"}
    assert len(b.sent) == 7  # B still delivers everything to its own sockets
    assert b.ctx.lookups == ["remote-1"]  # one origin lookup per prompt, not per event


def test_events_of_prompts_admitted_here_stay_here(pair):
    a, b, sub = pair
    sub.poll()
    b.relay.relay_send("execution_start", {"prompt_id": "local-1"}, "client-9")
    b.relay.relay_send("progress", {"value": 1, "max": 2, "prompt_id": "local-1"}, "client-9")
    b.relay.relay_send(PREVIEW_IMAGE, b"\x00\x00\x00\x01jpegbytes", "client-9")
    assert sub.poll() == 0 and a.sent == []
    assert b.ctx.redis.exists(stream_key(b.ctx.prefix, "B")) == 0
    assert len(b.sent) == 3


def test_a_preview_image_follows_the_sid_of_the_remote_prompt_and_arrives_encoded(pair):
    a, b, sub = pair
    sub.poll()
    b.relay.relay_send("executing", {"node": "3", "prompt_id": "remote-1"}, "client-7")
    image = Image.new("RGB", (640, 320), (200, 30, 40))
    b.relay.relay_send(UNENCODED_PREVIEW_IMAGE, ("JPEG", image, 256), "client-7")
    b.relay.relay_send(UNENCODED_PREVIEW_IMAGE, ("JPEG", image, 256), "someone-else")  # not the prompt's client
    assert sub.poll() == 2
    event, data, sid = a.sent[1]
    assert (event, sid) == (PREVIEW_IMAGE, "client-7")
    assert struct.unpack(">I", data[:4]) == (1,)  # JPEG, as ComfyUI's send_image frames it
    with Image.open(BytesIO(data[4:])) as decoded:
        assert decoded.size == (256, 128)
        assert abs(decoded.getpixel((128, 64))[0] - 200) < 8


def test_a_local_prompt_on_the_same_sid_stops_the_preview_relay(pair):
    a, b, sub = pair
    sub.poll()
    b.relay.relay_send("executing", {"node": "3", "prompt_id": "remote-1"}, "client-7")
    b.relay.relay_send("execution_start", {"prompt_id": "local-1"}, "client-7")
    b.relay.relay_send(PREVIEW_IMAGE, b"\x00\x00\x00\x01jpeg", "client-7")
    assert sub.poll() == 1 and a.sent[0][0] == "executing"


def test_the_final_history_entry_and_its_files_reach_the_admitting_server(pair):
    a, b, sub = pair
    entry = {"prompt": [5, "remote-1", {}, {"client_id": "client-7"}, ["9"]],
             "outputs": {"9": {"images": [{"filename": "r_00001_.png", "subfolder": "x", "type": "output"}]}},
             "status": {"status_str": "success", "completed": True, "messages": []}, "meta": {}}
    b.relay.task_finished("remote-1", entry)
    b.relay.task_finished("local-1", dict(entry))  # admitted on B: nothing to relay
    b.relay.task_finished("remote-1", None)  # a retried attempt writes no entry
    sub.poll()
    assert a.history == {"remote-1": entry}
    assert fetch_history(a.ctx.redis, a.ctx.prefix, "remote-1") == entry
    assert a.ctx.redis.get(file_key(a.ctx.prefix, "output", "x", "r_00001_.png")) == "B"


def test_a_restarted_server_gets_the_history_in_its_stream_but_not_stale_live_events(pair):
    a, b, _ = pair
    _run_remote_prompt(b)
    b.relay.task_finished("remote-1", {"outputs": {}, "status": {"status_str": "success"}})
    fresh = a.subscriber()  # A started after B published
    fresh.poll()
    assert a.sent == [] and list(a.history) == ["remote-1"]
    b.relay.relay_send("progress", {"value": 3, "max": 4, "prompt_id": "remote-1"}, "client-7")
    assert fresh.poll() == 1 and a.sent[0][0] == "progress"


def test_a_failing_origin_lookup_relays_nothing_sends_locally_and_pauses_lookups(pair):
    a, b, sub = pair
    sub.poll()
    now = [100.0]
    calls = []

    def flaky(prompt_id):
        calls.append(prompt_id)
        if len(calls) == 1:
            raise redis.ConnectionError("down")
        return "A"

    b.relay.routes = RelayRoutes(flaky, "B", retry_after_s=2.0, clock=lambda: now[0])
    b.relay.relay_send("progress", {"value": 1, "max": 2, "prompt_id": "remote-1"}, "client-7")
    b.relay.relay_send("progress", {"value": 2, "max": 2, "prompt_id": "remote-1"}, "client-7")
    assert sub.poll() == 0 and [e for e, _d, _s in b.sent] == ["progress", "progress"]
    assert calls == ["remote-1"]  # the second event did not wait on Redis again
    now[0] += 2.5
    b.relay.relay_send("progress", {"value": 2, "max": 2, "prompt_id": "remote-1"}, "client-7")
    assert calls == ["remote-1", "remote-1"] and sub.poll() == 1


def test_events_without_a_prompt_id_follow_the_sid_of_the_remote_prompt(pair):
    a, b, sub = pair
    sub.poll()
    b.relay.relay_send("execution_start", {"prompt_id": "remote-1"}, "client-7")
    queue = {"pending": 4, "running": 2, "jobs": {"remote-1": {"position": None, "state": "running"}}}
    b.relay.relay_send("governor.queue", queue, "client-7")
    b.relay.relay_send("governor.queue", queue, "client-8")  # another client: not relayed
    b.relay.relay_send("status", {"status": {}}, "client-7")  # B's own queue counter: never relayed
    assert sub.poll() == 2 and a.sent[1] == ("governor.queue", queue, "client-7")


def test_the_subscriber_thread_delivers_without_polling(pair):
    a, b, sub = pair
    sub.start()
    try:
        assert _wait(lambda: sub._live_from is not None)
        b.relay.relay_send("execution_start", {"prompt_id": "remote-1"}, "client-7")
        assert a.arrived.wait(5) and a.sent[0][0] == "execution_start"
    finally:
        sub.stop()


def test_history_written_while_redis_is_down_is_relayed_when_it_is_back(redis_server_factory, cluster_name):
    server = redis_server_factory("redis-relay")
    client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
    prefix = key_prefix(cluster_name)
    publisher = RelayPublisher(client, prefix, "B")
    server.kill()
    assert publisher.history("A", "p-1", {"outputs": {"1": {}}}) is False
    assert publisher.event("A", "p-1", "progress", {"prompt_id": "p-1"}, "s") is False  # live events are dropped
    assert publisher.flush() == 1
    server.restart()
    assert publisher.flush() == 0
    assert fetch_history(client, prefix, "p-1") == {"outputs": {"1": {}}}
    assert [f["k"] for _id, f in client.xrange(stream_key(prefix, "A"))] == ["h"]


def test_binary_frames_pass_through_and_metadata_previews_are_framed():
    assert encode_binary(3, b"abc") == (3, b"abc")
    event, body = encode_binary(4, (("PNG", Image.new("RGB", (8, 8)), None), {"node_id": "3"}))
    size = struct.unpack(">I", body[:4])[0]
    assert event == 4 and body[4:4 + size].startswith(b"{") and b'"image/png"' in body[4:4 + size]
    assert body[4 + size:].startswith(b"\x89PNG")


def _wait(predicate, timeout: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return predicate()
