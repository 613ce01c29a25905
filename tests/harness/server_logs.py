"""The logs of the servers a test used (ComfyUI, Redis), attached to its report when it fails.

Fixtures call ``remember`` for each server they hand a test; the root conftest's report hook adds
``sections(item)`` to a failed test's report.
"""

from __future__ import annotations

from typing import Protocol

import pytest


class LoggedServer(Protocol):
    name: str
    port: int

    def log_tail(self, lines: int) -> str: ...


_USED = pytest.StashKey[list]()


def remember(request: pytest.FixtureRequest, server: LoggedServer, kind: str, lines: int) -> None:
    """Attach ``server``'s last ``lines`` log lines (titled ``kind``) to this test's report if it fails."""
    request.node.stash.setdefault(_USED, []).append((kind, server, lines))


def sections(item: pytest.Item) -> list[tuple[str, str]]:
    return [(f"{kind} log ({server.name}, port {server.port})", server.log_tail(lines))
            for kind, server, lines in item.stash.get(_USED, [])]
