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
