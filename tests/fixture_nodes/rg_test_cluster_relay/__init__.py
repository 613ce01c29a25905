"""Test-only wiring of the cluster relay into a real ComfyUI, with a cluster context made for the test.

Active only when ``RG_TEST_RELAY_SERVER_ID`` is set (tests/integration/test_cluster_relay_servers.py);
otherwise this pack does nothing. The context answers ``origin_of(prompt_id)`` from a key the test
writes (``rg:{cluster}:test-origin:<id>``), so the relay, history and ``/view`` paths are exercised
between two real servers without the cluster dispatch: the test sends the prompt to server B and
says that server A admitted it. The server registers itself (with its URL) in the real registry.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

NODE_CLASS_MAPPINGS: dict = {}


@dataclass
class _TestContext:
    redis: Any
    prefix: str
    server_id: str
    registry: Any

    def origin_of(self, prompt_id: str) -> str | None:
        value = self.redis.get(f"{self.prefix}test-origin:{prompt_id}")
        return None if value is None else value.decode()


def _install() -> None:
    import redis

    prompt_server = sys.modules["server"].PromptServer.instance
    pack = type(prompt_server.restoration_governor).__module__.rsplit(".governor.", 1)[0]
    relay = importlib.import_module(f"{pack}.governor.comfy_cluster_relay")
    registry_mod = importlib.import_module(f"{pack}.governor.cluster_registry")
    jobs_mod = importlib.import_module(f"{pack}.governor.redis_jobs")
    client = redis.Redis.from_url(os.environ["RG_TEST_RELAY_REDIS_URL"], socket_timeout=5)
    cluster = os.environ["RG_TEST_RELAY_CLUSTER"]
    server_id = os.environ["RG_TEST_RELAY_SERVER_ID"]
    registry = registry_mod.ClusterRegistry(client, cluster)
    registry.register(server_id, url=os.environ["RG_TEST_RELAY_PUBLIC_URL"], gpu="cpu", node_classes=set())
    ctx = _TestContext(client, jobs_mod.key_prefix(cluster), server_id, registry)
    relay.install(prompt_server, ctx)


if os.environ.get("RG_TEST_RELAY_SERVER_ID"):
    _install()
