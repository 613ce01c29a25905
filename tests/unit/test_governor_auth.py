"""Who is admin, job ownership and the high-priority rule (governor/auth.py)."""

from __future__ import annotations

import pytest
from restoration_governor.governor.auth import is_admin, is_loopback, require_job_access, require_priority_right
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.jobs import Priority


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


def test_high_priority_needs_admin_and_jobs_need_their_owner_or_an_admin():
    require_priority_right(Priority.HIGH, True)
    require_priority_right(Priority.NORMAL, False)
    with pytest.raises(GovernorError) as high:
        require_priority_right(Priority.HIGH, False)
    assert high.value.status == 403 and "admin" in high.value.message
    require_job_access("me", "me", False)
    require_job_access("me", None, True)
    for client_id in ("you", None, ""):
        with pytest.raises(GovernorError) as other:
            require_job_access("me", client_id, False)
        assert other.value.status == 403


def test_the_core_route_guard_setting(monkeypatch):
    from restoration_governor.governor.auth import core_routes_guarded
    from restoration_governor.governor.config import GovernorConfig

    monkeypatch.delenv("GOVERNOR_ADMIN_TOKEN", raising=False)
    assert not core_routes_guarded(GovernorConfig())  # auto, single-user install: as ComfyUI
    assert core_routes_guarded(GovernorConfig(admin_token="t"))  # auto with a token: today's behaviour
    assert core_routes_guarded(GovernorConfig(guard_core_routes="on"))
    assert not core_routes_guarded(GovernorConfig(admin_token="t", guard_core_routes="off"))
    monkeypatch.setenv("GOVERNOR_ADMIN_TOKEN", "env")
    assert core_routes_guarded(GovernorConfig())


def test_owners_on_core_routes_are_comfy_users_in_multi_user_mode_else_client_or_peer():
    from restoration_governor.governor.auth import OWNER_USER_KEY, caller_identity, job_owner
    from restoration_governor.governor.jobs import Job

    def a_job(client_id, fair_key, user=None):
        extra = {OWNER_USER_KEY: user} if user else {}
        return Job(prompt_id="p", seq=1, prompt={}, extra_data=extra, outputs=[], client_id=client_id,
                   fair_key=fair_key, priority=Priority.NORMAL, created_at=0, queued_at=0, max_attempts=1)

    tab = a_job("tab-1", "tab-1", user="alice")
    assert job_owner(tab, multi_user=True) == caller_identity("alice", "tab-2", "10.0.0.7", multi_user=True)
    assert job_owner(tab, multi_user=True) != caller_identity("bob", "tab-1", "10.0.0.7", multi_user=True)
    assert job_owner(tab, multi_user=False) == caller_identity("bob", "tab-1", "10.0.0.9", multi_user=False)
    anonymous = a_job(None, "ip:10.0.0.7")
    assert job_owner(anonymous, multi_user=False) == caller_identity(None, None, "10.0.0.7", multi_user=False)
    assert job_owner(anonymous, multi_user=False) != caller_identity(None, None, "10.0.0.8", multi_user=False)
