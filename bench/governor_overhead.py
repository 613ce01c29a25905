"""What the governor costs: /prompt latency, scheduling, memory, recovery, gate and metrics.

Prints one JSON object. Every figure that has a target is measured against a baseline in the
same run (ComfyUI without the pack for /prompt latency), on this machine:

* ``prompt_latency``: POST /prompt round trips against two real ComfyUI servers started side by
  side, one with the pack and one without, requests interleaved so both see the same load.
  Targets: p50 extra <= 2 ms, p99 extra <= 10 ms.
* ``core``: in-process, with the real SQLite store: admission cost, position look-up at 1k / 10k /
  100k pending (O(log n): the 100x queue must not cost 100x), dispatch + completion cost with 10,000
  pending, memory per pending job, memory-gate cost per dispatch, metrics scrape with 10,000
  recorded jobs.
* ``recovery``: a real ComfyUI restarted over a store holding 10,000 pending prompts; the time the
  governor spends re-validating and requeueing them (its own log line), target <= 5 s.

Usage: ``.venv/bin/python bench/governor_overhead.py [--quick] [--core-only] [--compare-with DIR]``

``--compare-with DIR`` runs ``core`` of another checkout (say the commit before a refactor, from
``git worktree add``) and of this one in alternating fresh processes and prints the medians and
the ratio this / other per figure, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import NullHost, emit, summary_ms, use_repo_packages

use_repo_packages()

from harness.client import ComfyClient  # noqa: E402
from harness.comfy_server import ComfyServer  # noqa: E402
from harness.graphs import sleep_prompt  # noqa: E402
from restoration_governor.governor.admission import Ticket  # noqa: E402
from restoration_governor.governor.config import ConfigFile  # noqa: E402
from restoration_governor.governor.facade import Governor  # noqa: E402
from restoration_governor.governor.jobs import Job, Priority  # noqa: E402
from restoration_governor.governor.leases import LeaseManager  # noqa: E402
from restoration_governor.governor.memory import ProbeChain, SystemMemoryProbe, evaluate_gate  # noqa: E402
from restoration_governor.governor.scheduler import FairScheduler  # noqa: E402
from restoration_governor.governor.store import SqliteJobStore  # noqa: E402


def make_governor(directory: Path, instance: str = "bench") -> Governor:
    gov = Governor(config_file=ConfigFile(directory / "state" / "config.json"),
                   store=SqliteJobStore(directory / f"queue-{instance}.sqlite3"),
                   leases=LeaseManager(directory / "state" / "leases", instance),
                   probe=ProbeChain([SystemMemoryProbe()]), host=NullHost(), instance_id=instance)
    gov.update_config({"max_pending": 0, "max_pending_per_client": 0, "queue_timeout": 0, "memory_gate": False})
    gov.recover([], [], {})
    return gov


def prompt_for(i: int) -> dict:
    return {"1": {"class_type": "RGTestSleep", "inputs": {"seconds": 0.0, "tag": f"job{i}", "steps": 1}}}


def admit(gov: Governor, i: int, clients: int = 8) -> Job:
    client = f"client{i % clients}"
    ticket = Ticket(fair_key=client, priority=Priority(i % 3))
    return gov.admit(float(i), f"prompt-{i:06d}", prompt_for(i), {"client_id": client}, ["1"], {}, ticket)


# ---------------------------------------------------------------------------------------------
def bench_core(directory: Path, pending: int) -> dict:
    out: dict = {}
    gov = make_governor(directory)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    jobs = [admit(gov, i) for i in range(pending)]
    admit_s = time.perf_counter() - started
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    out["pending"] = pending
    out["admit_us_per_job"] = round(admit_s / pending * 1e6, 1)
    out["memory_bytes_per_pending_job"] = int((after - before) / pending)

    # position look-up: O(log n) -- compare 1k, 10k, 100k in a bare scheduler
    lookups = {}
    for n in (1_000, 10_000, 100_000):
        s = FairScheduler()
        sample = []
        for i in range(n):
            j = Job(prompt_id=f"q{i}", seq=i, prompt={}, extra_data={}, outputs=[], client_id=None,
                    fair_key=f"c{i % 8}", priority=Priority(i % 3), created_at=0, queued_at=0, max_attempts=3,
                    tier=i % 3)
            s.push(j)
            if i % (n // 100) == 0:
                sample.append(j)
        t = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            for j in sample:
                s.position(j)
        lookups[str(n)] = round((time.perf_counter() - t) / (rounds * len(sample)) * 1e6, 3)
    out["position_lookup_us"] = lookups
    out["position_lookup_growth_100k_over_1k"] = round(lookups["100000"] / lookups["1000"], 2)
    t = time.perf_counter()
    for j in jobs[:: max(1, pending // 200)]:
        gov.job_view(j)
    out["job_view_us_at_pending"] = round((time.perf_counter() - t) / len(jobs[:: max(1, pending // 200)]) * 1e6, 1)

    # dispatch + completion with `pending` queued
    n = 500
    t = time.perf_counter()
    for _ in range(n):
        d = gov.dispatch(0)
        gov.complete(d.job.prompt_id, True, None)
    out["dispatch_and_complete_us_per_job"] = round((time.perf_counter() - t) / n * 1e6, 1)

    # memory gate cost per dispatch (probe read + decision)
    probe = ProbeChain([SystemMemoryProbe()])
    cfg = gov.config
    t = time.perf_counter()
    for _ in range(2000):
        evaluate_gate(probe.read(), cfg, 1 << 30)
    out["gate_check_us"] = round((time.perf_counter() - t) / 2000 * 1e6, 2)

    # metrics scrape with 10,000 recorded jobs (finish them all)
    gov.update_config({"history_retention": 20000})
    t = time.perf_counter()
    while True:
        d = gov.dispatch(0)
        if d.job is None:
            break
        gov.complete(d.job.prompt_id, True, None)
    out["finish_us_per_job"] = round((time.perf_counter() - t) / max(1, pending - n) * 1e6, 1)
    out["recorded_jobs"] = len(gov.finished)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        body = gov.metrics.render()
        times.append(time.perf_counter() - t)
    out["metrics_scrape"] = {**summary_ms(times), "bytes": len(body)}
    return out


# ---------------------------------------------------------------------------------------------
async def _latency(server: ComfyServer, prompts: list[dict]) -> list[float]:
    out = []
    async with ComfyClient(server.url) as c:
        for p in prompts:
            t = time.perf_counter()
            r = await c.submit(p)
            out.append(time.perf_counter() - t)
            assert r.status == 200, r.body
    return out


async def _interleaved(with_pack: ComfyServer, without: ComfyServer, n: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(0, n, 10):  # alternate blocks of 10 so both servers see the same machine load
        batch = [sleep_prompt(0.0, f"lat{i + k}", steps=1) for k in range(10)]
        a += await _latency(with_pack, batch)
        b += await _latency(without, batch)
    return a, b


def bench_prompt_latency(directory: Path, n: int) -> dict:
    gov = ComfyServer(directory / "with-pack", name="with-pack")
    bare = ComfyServer(directory / "without-pack", name="without-pack", install_pack=False)
    try:
        gov.start()
        bare.start()
        asyncio.run(_interleaved(gov, bare, 40))  # warm-up
        with_pack, without = asyncio.run(_interleaved(gov, bare, n))
    finally:
        gov.stop()
        bare.stop()
    a, b = summary_ms(with_pack), summary_ms(without)
    extra = {"p50_ms": round(a["p50_ms"] - b["p50_ms"], 3), "p99_ms": round(a["p99_ms"] - b["p99_ms"], 3)}
    return {"with_pack": a, "without_pack": b, "extra": extra,
            "meets_target": extra["p50_ms"] <= 2.0 and extra["p99_ms"] <= 10.0}


def bench_recovery(directory: Path, pending: int) -> dict:
    server = ComfyServer(directory / "recovery", name="recovery")
    store_dir = server.user_dir / "restoration-governor"
    gov = make_governor(store_dir, instance=f"port{server.port}")
    for i in range(pending):
        admit(gov, i)
    gov.store.close()
    empty = ComfyServer(directory / "recovery-empty", name="recovery-empty")
    try:
        t = time.perf_counter()
        empty.start()
        empty_start = time.perf_counter() - t
        empty.stop()
        t = time.perf_counter()
        server.start(timeout=600)
        full_start = time.perf_counter() - t
        status = server.get_json("/governor/status")
    finally:
        server.stop()
        empty.stop()
    match = re.search(r"recovered the queue in ([0-9.]+) s: (\{.*\})", server.log_text())
    recovered_s = float(match.group(1)) if match else None
    return {"pending": pending, "governor_recovery_s": recovered_s, "summary": match.group(2) if match else None,
            "startup_s_with_queue": round(full_start, 2), "startup_s_empty": round(empty_start, 2),
            "pending_after_restart": status["counts"]["pending"],
            "meets_target": recovered_s is not None and recovered_s <= 5.0}


_COMPARED = ("admit_us_per_job", "dispatch_and_complete_us_per_job", "finish_us_per_job", "job_view_us_at_pending",
             "memory_bytes_per_pending_job")
_CORE_RUNNER = ("import json, sys, tempfile; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                "import governor_overhead as b; t = tempfile.mkdtemp(); "
                "print(json.dumps(b.bench_core(Path(t), int(sys.argv[2]))))")


def _core_in_process_of(checkout: Path, pending: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CORE_RUNNER, str(checkout / "bench"), str(pending)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_compare(other: Path, pending: int, rounds: int) -> dict:
    """``core`` of ``other`` and of this checkout, alternating fresh processes; medians and this/other."""
    runs: dict[str, list[dict]] = {"other": [], "this": []}
    for _ in range(rounds):
        runs["other"].append(_core_in_process_of(other, pending))
        runs["this"].append(_core_in_process_of(Path(__file__).resolve().parents[1], pending))
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in _COMPARED} for name, rs in runs.items()}
    ratio = {k: round(medians["this"][k] / medians["other"][k], 3) for k in _COMPARED if medians["other"][k]}
    return {"other": str(other), "pending": pending, "rounds": rounds, "median_other": medians["other"],
            "median_this": medians["this"], "ratio_this_over_other": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (for a smoke check)")
    parser.add_argument("--core-only", action="store_true", help="only the in-process figures (no servers)")
    parser.add_argument("--compare-with", type=Path, metavar="DIR", help="another checkout to compare core with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds for --compare-with")
    args = parser.parse_args()
    pending = 2000 if args.quick else 10_000
    if args.compare_with:
        emit(bench_compare(args.compare_with.resolve(), pending, args.rounds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        result = {"core": bench_core(tmp_path / "core", pending)}
        if not args.core_only:
            result["prompt_latency"] = bench_prompt_latency(tmp_path / "latency", 100 if args.quick else 400)
            result["recovery"] = bench_recovery(tmp_path / "recovery", pending)
    emit(result)


if __name__ == "__main__":
    main()
