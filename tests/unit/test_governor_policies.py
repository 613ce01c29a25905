"""Small governor policies: who is admin, failure classes and backoff, settings validation, uploads."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image
from restoration_governor.governor.auth import is_admin, is_loopback
from restoration_governor.governor.config import ConfigError, ConfigFile, GovernorConfig, apply_patch
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.failures import backoff_delay, classify, is_retryable
from restoration_governor.governor.jobs import Reason
from restoration_governor.governor.uploads import check_image_upload
from restoration_governor.governor.workflow_stats import workflow_fingerprint


@pytest.mark.parametrize(("remote", "loopback"), [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
                                                  ("10.0.0.7", False), ("192.168.1.2", False), ("", False),
                                                  (None, False), ("not-an-ip", False)])
def test_loopback_detection(remote, loopback):
    assert is_loopback(remote) is loopback


def test_admin_rules():
    assert is_admin({}, "127.0.0.1", None)
    assert not is_admin({}, "10.0.0.7", None), "no token set: remote clients are never admins"
    assert not is_admin({"X-Forwarded-For": "127.0.0.1"}, "10.0.0.7", None), "forwarding headers are not trusted"
    assert not is_admin({}, "127.0.0.1", "t0k"), "with a token set, loopback alone is not enough"
    assert is_admin({"Authorization": "Bearer t0k"}, "10.0.0.7", "t0k")
    assert is_admin({"X-Governor-Token": "t0k"}, "10.0.0.7", "t0k")
    assert not is_admin({"Authorization": "Bearer t0kk"}, "127.0.0.1", "t0k")


def test_failure_classification():
    def err(exc_type, msg):
        return [["execution_start", {}], ["execution_error", {"exception_type": exc_type, "exception_message": msg}]]

    transient = ["ConnectionError"]
    assert classify(err("torch.OutOfMemoryError", "CUDA out of memory"), transient).reason is Reason.OOM
    assert classify(err("RuntimeError", "MPS backend out of memory (MPS allocated: 1 GB)"), transient).reason \
        is Reason.OOM
    assert classify(err("builtins.ConnectionError", "reset by peer"), transient).reason is Reason.TRANSIENT
    assert classify(err("ValueError", "bad"), transient).reason is Reason.ERROR
    assert classify([["execution_interrupted", {"node_id": "3"}]], transient).reason is Reason.INTERRUPTED
    assert classify([], transient).reason is Reason.ERROR
    oom = classify(err("torch.OutOfMemoryError", "x"), transient)
    node = classify(err("ValueError", "x"), transient)
    assert is_retryable(oom, False) and not is_retryable(node, False) and is_retryable(node, True)


def test_backoff_is_exponential_capped_and_jittered():
    assert [backoff_delay(n, 2, 60, 0) for n in (1, 2, 3, 4, 10)] == [2, 4, 8, 16, 60]
    rng = random.Random(1)
    delays = [backoff_delay(3, 2, 60, 0.2, rng) for _ in range(200)]
    assert min(delays) >= 6.4 and max(delays) <= 9.6 and len(set(delays)) > 100


def test_settings_validation_names_every_bad_key():
    with pytest.raises(ConfigError) as e:
        apply_patch(GovernorConfig(), {"max_used_fraction": 1.5, "retry_attempts": 2.5, "memory_gate": "yes",
                                       "upload_formats": ["png", "exe"], "nope": 1})
    assert set(e.value.errors) == {"max_used_fraction", "retry_attempts", "memory_gate", "upload_formats", "nope"}
    assert apply_patch(GovernorConfig(), {"exec_timeout": 5}).exec_timeout == 5.0


def test_settings_persist_and_a_broken_value_in_the_file_does_not_stop_the_start(tmp_path):
    cf = ConfigFile(tmp_path / "config.json")
    cf.save(apply_patch(GovernorConfig(), {"max_pending": 7, "admin_token": "t"}))
    assert ConfigFile(tmp_path / "config.json").load().max_pending == 7
    (tmp_path / "config.json").write_text('{"max_pending": -5, "queue_timeout": 12}')
    loaded = ConfigFile(tmp_path / "config.json").load()
    assert loaded.max_pending == GovernorConfig().max_pending and loaded.queue_timeout == 12
    assert "admin_token" not in GovernorConfig(admin_token="t").public()


def _image(fmt: str, size=(32, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, fmt)
    return buf.getvalue()


def test_upload_checks_sniff_the_bytes():
    cfg = GovernorConfig()
    check_image_upload(_image("PNG"), "a.png", cfg)
    check_image_upload(_image("JPEG"), "renamed.png", cfg)  # the name does not matter, the bytes do
    for data, kind in [(b"GIF89a....", "upload_not_an_image"), (_image("GIF"), "upload_format_not_allowed")]:
        with pytest.raises(GovernorError) as e:
            check_image_upload(data, "x.png", cfg)
        assert e.value.type == kind and e.value.status == 400
    with pytest.raises(GovernorError) as e:
        check_image_upload(_image("PNG", (400, 300)), "big.png", apply_patch(cfg, {"upload_max_pixels": 1000}))
    assert e.value.type == "upload_too_many_pixels"
    with pytest.raises(GovernorError) as e:
        check_image_upload(b"\0" * 100, "x.png", apply_patch(cfg, {"upload_max_bytes": 10}))
    assert e.value.status == 413


def test_workflow_fingerprint_ignores_seeds_and_text_but_not_settings():
    a = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}
    b = {"3": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 20}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog"}}}
    c = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 40}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}
    assert workflow_fingerprint(a) == workflow_fingerprint(b) != workflow_fingerprint(c)
