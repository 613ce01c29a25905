"""Settings: validation, persistence, the public view (governor/config.py)."""

from __future__ import annotations

import pytest
from restoration_governor.governor.config import ConfigError, ConfigFile, GovernorConfig, apply_patch


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
