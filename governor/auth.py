"""Who may do what: admin actions need the token, or loopback when no token is set.

The token comes from ``X-Governor-Token``, else ``Authorization: Bearer <token>``: the pack's own header
wins because front doors own ``Authorization`` (core's ``WRAPPER_AUTH_TOKEN``, hosting proxies), so a
client behind one sends the front door's token there and the governor's in ``X-Governor-Token``. The peer address
is the TCP peer (``request.remote``), never a forwarding header, which any client can forge.
A client may act on its own jobs by naming its ``client_id`` (the id its WebSocket uses).

ComfyUI's own queue routes (``/queue``, ``/history``, ``/interrupt``, ``/api/jobs``) are restricted by
the ``guard_core_routes`` setting (:func:`core_routes_guarded`); there a job's owner is its ComfyUI user
(``Comfy-User``) when the server runs with ``--multi-user``, else its ``client_id``, or the peer address
for a job queued without one (:func:`job_owner`, :func:`caller_identity`).
"""

from __future__ import annotations

import hmac
import ipaddress

from .config import GovernorConfig, effective_admin_token
from .errors import forbidden
from .jobs import Job, Priority

# ``extra_data`` key under which the governor records the ComfyUI user (``Comfy-User``) that queued a
# prompt in multi-user mode; whatever a client sends under it is replaced at admission.
OWNER_USER_KEY = "governor_comfy_user"


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


def core_routes_guarded(config: GovernorConfig) -> bool:
    """Whether ComfyUI's own queue routes need admin rights or ownership (``guard_core_routes``):
    ``on``; ``off``; ``auto`` (the default) = when an admin token is set."""
    mode = config.guard_core_routes
    return mode == "on" or (mode == "auto" and bool(effective_admin_token(config)))


def caller_identity(user: str | None, client_id: str | None, remote: str | None, *, multi_user: bool) -> str:
    """Who a request acts as on ComfyUI's own routes: ``user:<Comfy-User>`` in multi-user mode (when sent),
    else the ``client_id`` it names, else ``ip:<peer address>`` (the same key admission files a job under)."""
    if multi_user and user:
        return f"user:{user}"
    return client_id or f"ip:{remote or 'unknown'}"


def job_owner(job: Job, *, multi_user: bool) -> str:
    """The identity that owns ``job`` on ComfyUI's own routes (compare with :func:`caller_identity`)."""
    user = job.extra_data.get(OWNER_USER_KEY) if multi_user else None
    return f"user:{user}" if isinstance(user, str) and user else job.fair_key
