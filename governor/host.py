"""``Host``: what the governor asks of the server it runs in (ComfyUI, or a fake in tests).

The governor speaks in its own terms here: a job ended without running, an attempt is being
interrupted, the queue changed. ``comfy_adapter.ComfyHost`` translates each call into ComfyUI's
protocol (history entries, the end-of-prompt events plain clients wait for, the interrupt flag), with
the shapes kept in ``comfy_protocol``. Every method is called with the governor's lock held, so
it must return promptly and must not call back into the governor.
"""

from __future__ import annotations

from typing import Any, Protocol

from .jobs import Job


class Host(Protocol):
    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """Send one of the governor's own events (``governor.queue``, ``governor.job``,
        ``governor.status``) to the client ``sid``, or to every client when ``sid`` is None."""

    def queue_changed(self) -> None:
        """The queue's contents changed: clients that show the server's queue should re-read it."""

    def interrupt(self, prompt_id: str) -> None:
        """Stop the running attempt of ``prompt_id`` (cooperatively; a no-op when it is not running)."""

    def job_ended_unstarted(self, job: Job, error: dict[str, Any], governor_info: dict[str, Any]) -> None:
        """``job`` failed without running (queue timeout, memory gate, invalid after restart).

        ``error`` is its last error record (``failures.error_record``); ``governor_info`` the summary
        that completion reports carry. The host records the failure where the server keeps finished
        prompts and tells the job's client (``job.client_id``, may be None) that the prompt ended.
        """

    def delete_history(self, prompt_id: str) -> None:
        """Forget the server's record of a finished prompt (it is being retried)."""
