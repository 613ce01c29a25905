"""Cluster tests run against a real ``redis-server`` (tests/harness/redis_server.py).

Their fixtures come from the plugin ``harness.redis_fixtures``, registered for the whole suite in
pyproject's pytest ``addopts``.
"""
