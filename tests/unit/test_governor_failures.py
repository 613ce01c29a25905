"""Failure classes, retryability and backoff (governor/failures.py)."""

from __future__ import annotations

import random

from restoration_governor.governor.comfy_protocol import report_from_messages
from restoration_governor.governor.failures import (
    MESSAGE_LIMIT,
    backoff_delay,
    classify,
    clip_message,
    is_retryable,
    short_type_name,
)
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


def test_records_keep_the_short_exception_name_and_the_end_of_a_long_message():
    mangled = "/srv/comfy/.venv/comfyui/custom_nodes/restoration-governor.restoration.download.DownloadError"
    remedy = "Download it by hand and put it in /srv/comfy/models/ddcolor."
    text = "Could not download ddcolor_paper.pth: " + "x" * 5000 + " " + remedy
    failure = classify(report_from_messages([["execution_error", {"exception_type": mangled,
                                                                  "exception_message": text}]]), [])
    assert failure.exception_type == "DownloadError" and short_type_name("ValueError") == "ValueError"
    assert len(failure.message) <= MESSAGE_LIMIT
    assert failure.message.startswith("Could not download ddcolor_paper.pth") and failure.message.endswith(remedy)
    assert failure.record(1, 0.0)["exception_type"] == "DownloadError"
    assert clip_message("  short  ") == "short"
