"""A prompt admitted on server A whose photo was uploaded to A runs on server B: B fetches the photo.

Two in-process governors on a real ``redis-server``; A's ``/view`` is a small HTTP server over A's
input folder (what ComfyUI's ``/view?type=input`` answers), registered as A's public URL.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from restoration_governor.governor import cluster_setup, comfy_cluster_inputs
from restoration_governor.governor.cluster_context import ClusterContext
from restoration_governor.governor.comfy_cluster_inputs import InputFetchError, input_names, prepare
from restoration_governor.governor.redis_leases import RedisLeaseManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from governor_fakes import make_governor, submit

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.fixture
def server_a_view(tmp_path):
    """A's ``/view`` over ``tmp/a-input``: ``(base URL, input dir, requests seen)``."""
    root = tmp_path / "a-input"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "photo.png").write_bytes(PHOTO)
    seen: list[tuple[dict, str | None]] = []

    class View(BaseHTTPRequestHandler):
        def do_GET(self):
            q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
            seen.append((q, self.headers.get("X-Governor-Proxied")))
            path = root / q.get("subfolder", "") / q.get("filename", "")
            if urlsplit(self.path).path != "/view" or q.get("type") != "input" or not path.is_file():
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            self.wfile.write(path.read_bytes())

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), View)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", root, seen
    httpd.shutdown()


def join(gov, redis_url, cluster, server, tmp, public_url) -> ClusterContext:
    ctx = ClusterContext.from_env({"GOVERNOR_REDIS_URL": redis_url, "GOVERNOR_CLUSTER": cluster,
                                   "GOVERNOR_SERVER_ID": server, "GOVERNOR_PUBLIC_URL": public_url}, state_dir=tmp)
    gov.rt.leases = RedisLeaseManager(ctx.redis, cluster, f"gpu-{server}", server)
    cluster_setup.attach(gov, ctx, f"gpu-{server}")
    cluster_setup.start(gov, frozenset({"LoadImage", "Save"}), gov.rt.leases)
    gov.rt.leases.stop_heartbeat()
    return ctx


PROMPT = {"1": {"class_type": "LoadImage", "inputs": {"image": "sub/photo.png [input]", "upload": "image"}},
          "2": {"class_type": "Save", "inputs": {"images": ["1", 0], "filename_prefix": "restored.png [output]"}}}


def test_server_b_fetches_the_photo_uploaded_to_server_a_before_running(tmp_path, redis_url, cluster_name,
                                                                      server_a_view):
    url_a, _input_a, seen = server_a_view
    a, _ = make_governor(tmp_path / "a", instance="a")
    b, _ = make_governor(tmp_path / "b", instance="b")
    join(a, redis_url, cluster_name, "a", tmp_path / "a", url_a)
    ctx_b = join(b, redis_url, cluster_name, "b", tmp_path / "b", "http://127.0.0.1:1")
    job = submit(a, "alice", prompt=PROMPT)
    taken = b.dispatch(0).job
    assert taken.prompt_id == job.prompt_id

    input_b = tmp_path / "b-input"
    input_b.mkdir()

    class Queue:  # ComfyUI's prompt worker calls get(); the governed queue answers (item, item_id)
        def get(self, timeout=None):
            return ((0, taken.prompt_id, taken.prompt, {}, ["2"]), 7)

    queue = Queue()
    comfy_cluster_inputs.install(queue, ctx_b, lambda: str(input_b))
    assert queue.get()[1] == 7
    assert (input_b / "sub" / "photo.png").read_bytes() == PHOTO
    assert seen == [({"filename": "photo.png", "type": "input", "subfolder": "sub"}, "1")]
    queue.get()  # already here: not fetched again
    assert len(seen) == 1


def test_only_relative_media_names_are_inputs():
    prompt = {"1": {"class_type": "L", "inputs": {"image": "../../etc/x.png", "a": "/abs/y.png", "b": "z.jpg",
                                                  "c": "model.safetensors", "d": "o.png [output]", "e": 3,
                                                  "f": "d\\w.webp [input]"}}}
    assert input_names(prompt) == [("", "z.jpg"), ("d", "w.webp")]


def test_a_file_over_the_cap_or_an_unreachable_origin_is_a_clear_error(tmp_path, server_a_view):
    url_a, _input_a, _seen = server_a_view
    dest = tmp_path / "b-input"
    dest.mkdir()
    with pytest.raises(InputFetchError) as e:
        prepare("p1", PROMPT, dest, lambda _p: "a", lambda _s: url_a, "b", max_bytes=100)
    assert "server 'a'" in str(e.value) and "GOVERNOR_SHARED_INPUT=1" in str(e.value)
    assert "100-byte cap" in str(e.value)
    assert not any(dest.rglob("*.png")) and not any(dest.rglob(".fetch-*"))
    with pytest.raises(InputFetchError, match="'sub/photo.png' of prompt p1 is on server 'a'"):
        prepare("p1", PROMPT, dest, lambda _p: "a", lambda _s: "http://127.0.0.1:1", "b", timeout_s=2)
    assert prepare("p1", PROMPT, dest, lambda _p: "b", lambda _s: url_a, "b") == []  # admitted here: nothing


def test_a_failed_fetch_is_explained_in_the_prompts_execution_error(tmp_path):
    from collections import namedtuple
    from types import SimpleNamespace

    class Queue:
        def get(self, timeout=None):
            return ((0, "p9", PROMPT, {}, ["2"]), 3)

    ctx = SimpleNamespace(origin_of=lambda _p: "a", url_of=lambda _s: "http://127.0.0.1:1", server_id="b")
    queue = Queue()
    failures = comfy_cluster_inputs.install(queue, ctx, lambda: str(tmp_path))
    assert queue.get()[1] == 3  # the worker still gets its prompt; ComfyUI fails it
    status = namedtuple("Status", "status_str completed messages")(
        "error", False, [("execution_start", {}), ("execution_error", {"exception_message": "No such file"})])
    comfy_cluster_inputs.explain(failures, "p9", status)
    message = status.messages[1][1]["exception_message"]
    assert message.startswith("No such file\ninput file 'sub/photo.png' of prompt p9 is on server 'a'")
    assert "GOVERNOR_SHARED_INPUT=1" in message and failures == {}
