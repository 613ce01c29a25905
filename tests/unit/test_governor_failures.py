"""Failure classes, retryability and backoff (governor/failures.py)."""

from __future__ import annotations

import random

from restoration_governor.governor.comfy_protocol import report_from_messages
from restoration_governor.governor.failures import backoff_delay, classify, is_retryable
from restoration_governor.governor.jobs import Reason


def test_failure_classification():
    def err(exc_type, msg):
        return report_from_messages([["execution_start", {}],
                                     ["execution_error", {"exception_type": exc_type, "exception_message": msg}]])

    transient = ["ConnectionError"]
    assert classify(err("torch.OutOfMemoryError", "CUDA out of memory"), transient).reason is Reason.OOM
    assert classify(err("RuntimeError", "MPS backend out of memory (MPS allocated: 1 GB)"), transient).reason \
        is Reason.OOM
    assert classify(err("builtins.ConnectionError", "reset by peer"), transient).reason is Reason.TRANSIENT
    assert classify(err("ValueError", "bad"), transient).reason is Reason.ERROR
    assert classify(report_from_messages([["execution_interrupted", {"node_id": "3"}]]), transient).reason \
        is Reason.INTERRUPTED
    assert classify(report_from_messages([]), transient).reason is Reason.ERROR
    oom = classify(err("torch.OutOfMemoryError", "x"), transient)
    node = classify(err("ValueError", "x"), transient)
    assert is_retryable(oom, False) and not is_retryable(node, False) and is_retryable(node, True)


def test_backoff_is_exponential_capped_and_jittered():
    assert [backoff_delay(n, 2, 60, 0) for n in (1, 2, 3, 4, 10)] == [2, 4, 8, 16, 60]
    rng = random.Random(1)
    delays = [backoff_delay(3, 2, 60, 0.2, rng) for _ in range(200)]
    assert min(delays) >= 6.4 and max(delays) <= 9.6 and len(set(delays)) > 100
