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
