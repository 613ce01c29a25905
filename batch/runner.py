"""One batch run: every photo checked, uploaded, submitted once, followed to its end, and saved.

At most ``max_queued`` photos are in flight (submitted and not finished) at a time, so a batch of
thousands never floods the shared queue. A photo's idempotency key is also its name in the
journal: a re-run skips photos whose results are on disk, re-attaches to prompts it already
submitted, and submits only the rest (the server answers a known key with the first prompt).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inputs import BadInput, Photo, Source, inspect
from .journal import Journal
from .output import result_path, result_stems, write_result
from .progress import Progress
from .report import Outcome
from .server import Server, ServerError, ServerGone
from .workflows import OUTPUT_SUBFOLDER, Workflow, idempotency_key

WAITING = ("pending", "waiting_for_memory", "stuck")
FINAL_FAILURES = ("failed", "cancelled")
UPLOAD_SUBFOLDER = "restore-batch"


@dataclass(frozen=True)
class Options:
    """How to run. ``priority``: low | normal | high; ``max_queued``: photos in flight at once;
    ``poll_s``: seconds between status checks of a photo in flight; ``patience_s``: how long the
    server may stay unreachable before the photos in flight are reported failed."""

    out_dir: Path
    client_id: str
    priority: str = "low"
    max_queued: int = 4
    sixteen_bit: bool = False
    retry_failed: bool = False
    poll_s: float = 0.5
    patience_s: float = 600.0


class Runner:
    def __init__(self, server: Server, workflow: Workflow, options: Options, progress: Progress,
                 journal: Journal) -> None:
        self.server = server
        self.workflow = workflow
        self.options = options
        self.progress = progress
        self.journal = journal
        self.max_pixels: int | None = None
        self.max_bytes: int | None = None
        self.stems: dict[Path, Path] = {}

    async def read_caps(self) -> None:
        """The server's upload caps (``GET /governor/config``), so oversize photos are refused up front."""
        try:
            config = (await self.server.get_json("/governor/config")).get("config", {})
        except ServerError:
            return  # no governor API: the server's own upload checks still answer per file
        self.max_pixels = config.get("upload_max_pixels")
        self.max_bytes = config.get("upload_max_bytes")

    async def run(self, sources: list[Source], outcomes: list[Outcome]) -> None:
        """Fill ``outcomes`` (one per source, in order) as photos finish; returns when all have."""
        queue: asyncio.Queue[tuple[Source, Outcome]] = asyncio.Queue()
        self.stems = result_stems([s.relative for s in sources])
        for source in sources:
            outcome = Outcome(file=source.relative.as_posix())
            outcomes.append(outcome)
            queue.put_nowait((source, outcome))

        async def worker() -> None:
            while not queue.empty():
                source, outcome = queue.get_nowait()
                try:
                    await self.process(source, outcome)
                except Exception as e:  # one photo's surprise must not stop the batch
                    self._fail(outcome, f"unexpected error: {type(e).__name__}: {e}", "failed")

        await asyncio.gather(*(worker() for _ in range(max(1, self.options.max_queued))))

    async def process(self, source: Source, outcome: Outcome) -> None:
        try:
            size = source.path.stat().st_size
        except OSError as e:
            return self._fail(outcome, f"cannot read the file: {e.strerror or e}", "bad_input")
        if self.max_bytes and size > self.max_bytes:  # refused before reading a huge file into memory
            return self._fail(outcome, f"file too large: {size} bytes, the server accepts at most {self.max_bytes}",
                              "bad_input")
        photo = await asyncio.to_thread(inspect, source, self.max_pixels)
        if isinstance(photo, BadInput):
            return self._fail(outcome, photo.reason, "bad_input", hash=photo.sha256)
        outcome.hash = photo.sha256
        # The client id is part of the key: the same key always comes with the same request body (a
        # server may refuse a known key with a different body), and another --out folder is another batch.
        key = idempotency_key(photo.sha256, self.workflow, {"client_id": self.options.client_id})
        record = self.journal.get(key)
        outputs = [self.options.out_dir / p for p in record.get("outputs", [])]
        if record.get("status") == "done" and outputs and all(p.exists() for p in outputs):
            outcome.status, outcome.prompt_id = "skipped", record.get("prompt_id", "")
            outcome.outputs = [str(p.relative_to(self.options.out_dir).as_posix()) for p in outputs]
            self.progress.event("skipped", outcome.file, prompt_id=outcome.prompt_id)
            return None
        started = time.monotonic()
        try:
            job = await self.follow(photo, key, record.get("prompt_id"), outcome)
            if job["state"] != "success":
                reason = job.get("reason") or job["state"]
                error = job.get("last_error") or {}
                detail = error.get("message") if isinstance(error, dict) else str(error)
                return self._fail(outcome, f"{reason}: {detail}" if detail else str(reason), "failed")
            written = await self.save(photo, key, outcome.prompt_id)
        except (ServerError, ServerGone) as e:
            return self._fail(outcome, str(e), "failed")
        outcome.outputs = [p.relative_to(self.options.out_dir).as_posix() for p in written]
        outcome.status, outcome.seconds = "done", round(time.monotonic() - started, 2)
        self.journal.write(key, status="done", prompt_id=outcome.prompt_id, outputs=outcome.outputs)
        self.progress.event("done", outcome.file, prompt_id=outcome.prompt_id, seconds=outcome.seconds,
                            outputs=outcome.outputs)
        return None

    async def follow(self, photo: Photo, key: str, prompt_id: str | None, outcome: Outcome) -> dict[str, Any]:
        """Submit (or re-attach to) the photo's prompt and poll it until it ends; its last job record."""
        for _ in range(3):
            job = await self.server.job(prompt_id) if prompt_id else None
            if job is None:  # never submitted, or this server has no record of it: submit under the key
                prompt_id = await self.submit(photo, key, outcome)
            else:
                outcome.prompt_id = prompt_id
                self.progress.event("attached", outcome.file, prompt_id=prompt_id, state=job["state"])
                if job["state"] in FINAL_FAILURES and self.options.retry_failed:
                    await self.server.request("POST", f"/governor/jobs/{prompt_id}/retry",
                                              json_body={"client_id": self.options.client_id})
            job = await self.wait(prompt_id, outcome.file)
            if job is not None:
                return job
        raise ServerGone(f"the server keeps forgetting prompt {prompt_id}")

    async def submit(self, photo: Photo, key: str, outcome: Outcome) -> str:
        name = await self.server.upload(photo.upload_name, photo.data, UPLOAD_SUBFOLDER)
        answer, replayed = await self.server.submit(self.workflow.for_photo(name, key), client_id=self.options.client_id,
                                                    key=key, priority=self.options.priority)
        prompt_id = answer["prompt_id"]
        outcome.prompt_id = prompt_id
        self.journal.write(key, file=outcome.file, prompt_id=prompt_id)
        gov = answer.get("governor") or {}
        self.progress.event("attached" if replayed else "submitted", outcome.file, prompt_id=prompt_id,
                            position=gov.get("position"), eta_s=gov.get("eta_s"))
        return prompt_id

    async def wait(self, prompt_id: str, file: str) -> dict[str, Any] | None:
        """Poll ``/governor/jobs/{id}`` until the job ends (its record), or None if the server lost it."""
        seen: tuple[Any, ...] = ()
        while True:
            job = await self.server.job(prompt_id)
            if job is None:
                return None
            state = job["state"]
            if state not in WAITING and state != "running":
                return job
            now = (state, job.get("position"), job.get("attempts"))
            if now != seen:  # an event when the state, position or attempt changes, not on every ETA tick
                seen = now
                kind = "running" if state == "running" else "queued"
                self.progress.event(kind, file, prompt_id=prompt_id, position=job.get("position"),
                                    eta_s=job.get("eta_s"), attempt=job.get("attempts"))
            elif state != "running":
                self.progress.queue_info[file] = (job.get("position"), job.get("eta_s"))  # the bar's ETA only
            await asyncio.sleep(self.options.poll_s)

    async def save(self, photo: Photo, key: str, prompt_id: str) -> list[Path]:
        images = await self.result_images(key, prompt_id)
        if not images:
            raise ServerError(0, "the prompt finished without an image output")
        written = []
        for index, (filename, subfolder, type_) in enumerate(images):
            png = await self.server.view(filename, subfolder, type_)
            target = result_path(self.options.out_dir, self.stems[photo.source.relative], index)
            written.append(await asyncio.to_thread(write_result, png, photo, target,
                                                   sixteen_bit=self.options.sixteen_bit))
        return written

    async def result_images(self, key: str, prompt_id: str) -> list[tuple[str, str, str]]:
        """``(filename, subfolder, type)`` of the saved images: from the history, or — when a restart
        emptied it — found under the per-photo prefix the save nodes were given."""
        entry = await self.server.history(prompt_id)
        if entry and entry.get("outputs"):
            found = [(img["filename"], img.get("subfolder", ""), img.get("type", "output"))
                     for _, out in sorted(entry["outputs"].items())
                     for img in out.get("images", []) if isinstance(img, dict) and "filename" in img]
            saved = [i for i in found if i[2] == "output"]
            return saved or found
        images = []
        for counter in range(1, 100):
            name = f"{key[:24]}_{counter:05}_.png"
            try:
                await self.server.view(name, OUTPUT_SUBFOLDER, "output")
            except ServerError:
                break
            images.append((name, OUTPUT_SUBFOLDER, "output"))
        return images

    def _fail(self, outcome: Outcome, reason: str, status: str, **fields: Any) -> None:
        outcome.status, outcome.error = status, reason
        if fields.get("hash"):
            outcome.hash = fields["hash"]
        self.progress.event(status, outcome.file, prompt_id=outcome.prompt_id, error=reason)
