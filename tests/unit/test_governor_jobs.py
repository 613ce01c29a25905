"""Job states and their groups; the web extension's copy of the groups is generated (governor/jobs.py)."""

from __future__ import annotations

from pathlib import Path

from restoration_governor.governor.jobs import STATE_GROUPS, JobState, Priority

JS_COPY = Path(__file__).resolve().parents[2] / "web" / "lib" / "job_states.mjs"


def render_js() -> str:
    lines = ["// Generated from STATE_GROUPS in governor/jobs.py by tests/unit/test_governor_jobs.py: do not edit.",
             "// The groups of job states the governor reports (queued: waiting to start; active: an attempt",
             "// is running; final: finished for good)."]
    for group, states in STATE_GROUPS.items():
        values = ", ".join(f'"{s.value}"' for s in states)
        lines.append(f"export const {group.upper()}_STATES = new Set([{values}]);")
    return "\n".join(lines) + "\n"


def test_every_state_is_in_exactly_one_group():
    grouped = [s for states in STATE_GROUPS.values() for s in states]
    assert sorted(grouped) == sorted(JobState) and len(grouped) == len(set(grouped))
    assert [s for s in JobState if s.queued] == [JobState.PENDING, JobState.WAITING_FOR_MEMORY]
    assert [s for s in JobState if s.active] == [JobState.RUNNING, JobState.STUCK]
    assert [s for s in JobState if s.final] == [JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED]


def test_the_web_extensions_state_groups_are_generated_from_the_python_ones():
    expected = render_js()
    assert JS_COPY.read_text() == expected, f"{JS_COPY} is stale; write this into it:\n{expected}"


def test_priorities_parse_case_insensitively_and_name_the_choices():
    assert Priority.parse(" High ") is Priority.HIGH and Priority.LOW.label == "low"
    try:
        Priority.parse("urgent")
    except ValueError as e:
        assert "high, normal or low" in str(e)
    else:
        raise AssertionError("urgent was accepted")
