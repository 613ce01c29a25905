"""Pytest fixtures for a real ``redis-server`` (a plugin: ``pytest_plugins = ["harness.redis_fixtures"]``).

* ``redis_server`` (session): one server shared by the session, restarted if a test stopped it.
* ``redis_url`` (function): that server's URL with database 0 flushed, so each test starts empty.
* ``redis_client`` (function): a redis-py client on ``redis_url`` (``decode_responses=True``).
* ``cluster_name`` (function): a cluster name unique to the test, for tests that want a key prefix
  of their own instead of (or as well as) the flush.
* ``redis_server_factory`` (function): ``make(name)`` -> a private started server, stopped after the
  test; for tests that kill or restart Redis.

A failing test gets the tail of the Redis log attached to its report (harness.server_logs).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import server_logs
from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-shared"), name="redis-shared").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, request: pytest.FixtureRequest) -> str:
    import redis

    if not redis_server.alive():
        redis_server.start()
    server_logs.remember(request, redis_server, "redis", 60)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def cluster_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_server_factory(tmp_path: Path, request: pytest.FixtureRequest):
    started: list[RedisServer] = []

    def make(name: str = "redis-private") -> RedisServer:
        server = RedisServer(tmp_path / name, name=name)
        started.append(server)
        server_logs.remember(request, server, "redis", 60)
        return server.start()

    yield make
    for server in started:
        server.kill()
