"""Cluster tests run against a real ``redis-server`` (tests/harness/redis_server.py).

The fixtures live in the plugin ``harness.redis_fixtures``. pytest accepts ``pytest_plugins`` only
in the root conftest, so they are imported here (a conftest's fixtures and hooks are found by name).
Once the plugin is registered for the whole suite (``-p harness.redis_fixtures``), drop these imports.
"""

from harness.redis_fixtures import (  # noqa: F401
    cluster_name,
    pytest_runtest_makereport,
    redis_client,
    redis_server,
    redis_server_factory,
    redis_url,
)
