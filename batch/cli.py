"""``restore.py``'s command line: parse, run the batch, write the report, pick the exit code.

Exit codes: 0 every photo restored (now or by an earlier run), 1 at least one photo failed or was
not a usable image, 2 usage error (bad option, unknown mode, unusable workflow, no input found),
130 interrupted (Ctrl-C or SIGTERM; run the same command again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import socket
import sys
from pathlib import Path

from .inputs import collect
from .journal import Journal
from .progress import Progress
from .report import Outcome, write_report
from .runner import Options, Runner
from .server import Server
from .workflows import MODES, WorkflowError, load_workflow

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="restore.py",
        description="Restore folders of photos through a ComfyUI server running the restoration-governor pack. "
                    "Re-running the same command resumes: finished photos are skipped, queued ones re-attached.",
        epilog="Exit codes: 0 all restored, 1 some failed (see restore-report.csv), 2 usage error, 130 interrupted (Ctrl-C or SIGTERM).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--mode", default="old-photo", metavar="MODE",
                   help=f"{', '.join(MODES)} (default old-photo), or the path of an API-format workflow "
                        "with one LoadImage input")
    p.add_argument("--out", required=True, type=Path, help="output folder (mirrors the input folders)")
    p.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI URL (default %(default)s)")
    p.add_argument("--token", help="admin token (needed for --priority high when the server has one)")
    p.add_argument("--priority", choices=("low", "normal", "high"), default="low",
                   help="queue priority (default low: a batch must not starve people at the editor)")
    p.add_argument("--max-queued", type=int, default=4, metavar="N",
                   help="photos submitted but not finished at any time (default %(default)s)")
    p.add_argument("--ddcolor-model", metavar="FILE", help="DDColor checkpoint (as its loader lists it)")
    p.add_argument("--gpen-model", metavar="FILE", help="GPEN model (as its loader lists it)")
    p.add_argument("--png16", action="store_true",
                   help="16-bit scans give 16-bit PNGs (the scan's tones, the result's colours)")
    p.add_argument("--retry-failed", action="store_true",
                   help="queue photos that failed in an earlier run once more (same prompt id)")
    p.add_argument("--client-id", help="client id the server uses for fair share (default: one per --out folder)")
    p.add_argument("--json", action="store_true", help="one JSON object per event on stdout instead of a bar")
    return p


def default_client_id(out_dir: Path) -> str:
    digest = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:10]
    return f"restore.py-{socket.gethostname()}-{digest}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on a usage error
    if args.max_queued < 1:
        parser.error("--max-queued must be at least 1")
    try:
        workflow = load_workflow(args.mode, ddcolor_model=args.ddcolor_model, gpen_model=args.gpen_model)
    except WorkflowError as e:
        parser.error(str(e))
    if any(Path(raw).is_dir() and args.out.resolve() == Path(raw).resolve() for raw in args.inputs):
        parser.error(f"--out {args.out} is an input folder: put the results in another folder (results written "
                     "beside the scans would be taken as new scans by the next run)")
    sources, missing = collect(args.inputs, exclude=args.out)
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    if not sources:
        parser.error("no image files found in the inputs (JPEG, PNG, TIFF, BMP, WebP)")
    out_dir: Path = args.out
    if out_dir.exists() and not out_dir.is_dir():
        parser.error(f"--out {out_dir} is not a folder")
    options = Options(out_dir=out_dir, client_id=args.client_id or default_client_id(out_dir),
                      priority=args.priority, max_queued=args.max_queued, sixteen_bit=args.png16,
                      retry_failed=args.retry_failed)
    outcomes: list[Outcome] = []
    progress = Progress(len(sources), as_json=args.json)
    journal = Journal(out_dir)
    interrupted = False
    # cron's `timeout` and systemd stop with SIGTERM: end like Ctrl-C, with the report written.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(_run(args, workflow, options, progress, journal, sources, outcomes))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        journal.close()
    for outcome in outcomes:
        if outcome.status == "pending":
            outcome.status = "interrupted"
    summary = {s: sum(o.status == s for o in outcomes) for s in
               ("done", "skipped", "failed", "bad_input", "interrupted")}
    summary.update(total=len(sources), workflow=workflow.name, server=args.server)
    write_report(out_dir, outcomes, summary)
    progress.close(summary)
    if interrupted:
        sys.stderr.write("interrupted: run the same command again to resume (nothing is submitted twice)\n")
        return EXIT_INTERRUPTED
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


async def _run(args, workflow, options, progress, journal, sources, outcomes) -> None:
    def on_wait(why: str, seconds: float) -> None:
        progress.event("waiting", why=why, retry_in_s=round(seconds, 1))

    async with Server(args.server, token=args.token, patience=options.patience_s, on_wait=on_wait) as server:
        runner = Runner(server, workflow, options, progress, journal)
        await runner.read_caps()
        await runner.run(sources, outcomes)
