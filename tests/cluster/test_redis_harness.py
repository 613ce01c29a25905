"""The Redis harness: a private server that answers, keeps acknowledged data over a restart, and dies on kill."""

from __future__ import annotations

import pytest
import redis


def test_server_keeps_data_over_clean_restart_and_binds_loopback(redis_server_factory):
    server = redis_server_factory("harness")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.rpush("rg:{h}:list", "a", "b")
    config = client.config_get("*")
    assert config["bind"].split() == ["127.0.0.1"]
    assert (config["appendonly"], config["appendfsync"], config["protected-mode"]) == ("yes", "everysec", "yes")
    port = server.port
    server.restart()
    assert server.port == port
    assert client.lrange("rg:{h}:list", 0, -1) == ["a", "b"]
    server.kill()
    assert not server.alive() and not server.ping()
    client.close()


@pytest.mark.parametrize("run", [1, 2])
def test_redis_url_starts_empty(redis_client, run):
    assert redis_client.dbsize() == 0, "the previous test's key must have been flushed"
    redis_client.set("leftover", str(run))
