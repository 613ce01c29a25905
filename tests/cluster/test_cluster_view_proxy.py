"""``/view`` through the submitting server: a file another server wrote is proxied from that server's URL.

Server B is a real aiohttp server with a ``/view`` like ComfyUI's; server A has the middleware in
front of a ``/view`` that finds nothing locally. The owner index is the real Redis one.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from governor.cluster_relay_view import PROXY_HEADER, file_key, make_view_proxy, output_files
from governor.redis_jobs import key_prefix

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


class Upstream:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.app = web.Application()
        self.app.router.add_get("/view", self.view)

    async def view(self, request: web.Request):
        self.requests.append((request.path, dict(request.query), dict(request.headers)))
        if request.query.get("filename") == "r_00001_.png" and request.query.get("subfolder", "") == "sub":
            return web.Response(body=PNG, content_type="image/png",
                                headers={"Content-Disposition": 'filename="r_00001_.png"'})
        return web.Response(status=404)


async def _local_view(request: web.Request):
    return web.Response(status=404)


@pytest.fixture
async def servers(redis_client, cluster_name):
    prefix = key_prefix(cluster_name)
    upstream = Upstream()
    b = TestServer(upstream.app)
    await b.start_server()
    urls = {"B": str(b.make_url("/")), "A": "http://127.0.0.1:1", "C": "file:///etc"}

    def owner_of(kind, sub, name):
        return redis_client.get(file_key(prefix, kind, sub, name))

    def make(max_bytes=1 << 20):
        app = web.Application(middlewares=[make_view_proxy(owner_of, urls.get, "A", max_bytes=max_bytes)])
        app.router.add_get("/view", _local_view)
        app.router.add_get("/api/view", _local_view)
        return app

    clients = []

    async def client(max_bytes=1 << 20):
        c = TestClient(TestServer(make(max_bytes)))
        await c.start_server()
        clients.append(c)
        return c

    redis_client.set(file_key(prefix, "output", "sub", "r_00001_.png"), "B")
    yield client, upstream, redis_client, prefix, urls
    for c in clients:
        await c.close()
    await b.close()


async def test_a_file_written_by_another_server_is_served_through_this_one(servers):
    client, upstream, *_ = servers
    a = await client()
    for path in ("/view", "/api/view"):
        resp = await a.get(path, params={"filename": "r_00001_.png", "subfolder": "sub", "type": "output"},
                           headers={"Authorization": "Bearer t0k"})
        assert resp.status == 200 and await resp.read() == PNG
        assert resp.headers["Content-Type"] == "image/png" and resp.headers["X-Governor-Served-By"] == "B"
    # the owner is asked at its registered URL, always on /view, with the same query and the marker header
    assert [(p, q["filename"], h[PROXY_HEADER], h["Authorization"]) for p, q, h in upstream.requests] == [
        ("/view", "r_00001_.png", "1", "Bearer t0k")] * 2


async def test_files_nobody_wrote_or_this_server_wrote_stay_404(servers):
    client, upstream, redis_client, prefix, _ = servers
    a = await client()
    redis_client.set(file_key(prefix, "output", "", "mine.png"), "A")
    for name in ("unknown.png", "mine.png"):
        assert (await a.get("/view", params={"filename": name})).status == 404
    assert upstream.requests == []


async def test_a_forwarded_request_is_never_forwarded_again(servers):
    client, upstream, *_ = servers
    a = await client()
    resp = await a.get("/view", params={"filename": "r_00001_.png", "subfolder": "sub"}, headers={PROXY_HEADER: "1"})
    assert resp.status == 404 and upstream.requests == []


async def test_only_http_urls_from_the_registry_are_contacted(servers):
    client, upstream, redis_client, prefix, _ = servers
    a = await client()
    redis_client.set(file_key(prefix, "output", "", "c.png"), "C")  # C registered a file:// URL
    assert (await a.get("/view", params={"filename": "c.png"})).status == 404
    assert upstream.requests == []


async def test_an_answer_over_the_cap_is_refused_and_an_unreachable_owner_is_a_502(servers):
    client, _upstream, redis_client, prefix, urls = servers
    small = await client(max_bytes=1000)
    resp = await small.get("/view", params={"filename": "r_00001_.png", "subfolder": "sub"})
    assert resp.status == 413
    urls["D"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    redis_client.set(file_key(prefix, "output", "", "d.png"), "D")
    a = await client()
    resp = await a.get("/view", params={"filename": "d.png"})
    assert resp.status == 502 and "D" in await resp.text()


def test_output_files_are_found_in_node_outputs_and_history_entries():
    outputs = {"9": {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"},
                                {"filename": "b.png", "subfolder": "", "type": "temp"}], "text": ["hi"]},
               "10": {"gifs": [{"filename": "c.webp"}]}}
    assert sorted(output_files(outputs)) == [("output", "", "c.webp"), ("output", "s", "a.png"),
                                             ("temp", "", "b.png")]
