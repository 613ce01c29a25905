"""Who may do what: admin actions need the token, or loopback when no token is set.

The token comes from ``X-Governor-Token``, else ``Authorization: Bearer <token>``: the pack's own header
wins because front doors own ``Authorization`` (core's ``WRAPPER_AUTH_TOKEN``, hosting proxies), so a
client behind one sends the front door's token there and the governor's in ``X-Governor-Token``. The peer address
is the TCP peer (``request.remote``), never a forwarding header, which any client can forge.
A client may act on its own jobs by naming its ``client_id`` (the id its WebSocket uses).
"""

from __future__ import annotations

import hmac
import ipaddress

from .config import GovernorConfig, effective_admin_token
from .errors import forbidden
from .jobs import Priority


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def presented_token(headers) -> str | None:
    """``X-Governor-Token`` when sent, else the ``Authorization: Bearer`` token, else None."""
    own = headers.get("X-Governor-Token", "").strip()
    if own:
        return own
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def is_admin(headers, remote: str | None, admin_token: str | None) -> bool:
    if admin_token:
        token = presented_token(headers)
        return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())
    return is_loopback(remote)


def require_priority_right(priority: Priority, admin: bool) -> None:
    """High priority needs admin rights (the one place this rule lives); raises 403 otherwise."""
    if priority is Priority.HIGH and not admin:
        raise forbidden("High priority needs the admin token",
                        "send Authorization: Bearer <token> as an admin, or use normal or low priority")


def require_job_access(job_client_id: str | None, client_id: str | None, admin: bool) -> None:
    """Only the client that queued a job (by its ``client_id``) or an admin may change it; 403 otherwise."""
    if admin or (client_id and client_id == job_client_id):
        return
    raise forbidden("Not your job", "only the client that queued a job (by its client_id) or an admin may "
                    "change it")


def sees_everything(config: GovernorConfig, admin: bool) -> bool:
    """Whether a caller may see every job's client id and prompt: always without an admin token;
    with one, admins only (others see their own jobs, and the rest as position and state)."""
    return admin or not effective_admin_token(config)


def is_admin_request(config: GovernorConfig, headers, remote: str | None) -> bool:
    """Admin rights of a request under ``config`` (its token, or ``GOVERNOR_ADMIN_TOKEN``)."""
    return is_admin(headers, remote, effective_admin_token(config))
