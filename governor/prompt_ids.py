"""The rule for a client-chosen ``prompt_id`` and the answer when one is taken (plain Python).

Core 0.4x accepts only canonical lowercase UUIDs (``comfy_execution.jobs.validate_job_id``; 400
``invalid_prompt_id`` otherwise). When the core has that function the adapter passes it in and
admission applies exactly it, so a client gets one answer whichever layer looks first; on older cores
the governor's own rule stays: 1-128 letters, digits, ``.``, ``_``, ``:`` or ``-``.

An id that any job the governor knows already uses — pending, running or finished (its store keeps
finished records for ``history_retention`` jobs) — is 409 ``prompt_id_in_use``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import GovernorError, bad_request

# The core's validator: returns False or raises ValueError/TypeError for an id it refuses.
CoreRule = Callable[[str], object]

_OWN_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def _core_accepts(rule: CoreRule, prompt_id: str) -> bool:
    try:
        return rule(prompt_id) is not False
    except (ValueError, TypeError):
        return False


def check_prompt_id(prompt_id: object, core_rule: CoreRule | None) -> str:
    """``prompt_id`` when acceptable; raises 400 ``invalid_prompt_id`` (the core's rule when given)."""
    if core_rule is not None:
        if not isinstance(prompt_id, str) or not _core_accepts(core_rule, prompt_id):
            raise bad_request("invalid_prompt_id", "Invalid prompt_id",
                              "prompt_id must be a UUID in canonical lowercase form "
                              "(e.g. 0b0c9a4e-62a2-4c53-9c0c-5a7a1c8a0e01); leave it out to get one")
        return prompt_id
    if not isinstance(prompt_id, str) or not _OWN_RULE.match(prompt_id):
        raise bad_request("invalid_prompt_id", "Invalid prompt_id",
                          "prompt_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return prompt_id


def prompt_id_in_use(prompt_id: str) -> GovernorError:
    """The 409 for a ``prompt_id`` that a pending, running or finished job already uses."""
    return GovernorError(409, "prompt_id_in_use", "prompt_id already in use",
                         f"a prompt with id {prompt_id} is queued, running or finished; choose a new id",
                         {"prompt_id": prompt_id})
