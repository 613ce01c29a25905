"""Who may do what: admin actions need the token, or loopback when no token is set.

The token comes from ``Authorization: Bearer <token>`` or ``X-Governor-Token``. The peer address
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
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("X-Governor-Token") or None


def is_admin(headers, remote: str | None, admin_token: str | None) -> bool:
    if admin_token:
        token = presented_token(headers)
        return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())
    return is_loopback(remote)
