"""Cluster tests run against a real ``redis-server`` (tests/harness/redis_server.py)."""

pytest_plugins = ["harness.redis_fixtures"]
