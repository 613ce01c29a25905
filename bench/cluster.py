"""What cluster mode costs and gives: Redis vs SQLite overhead, 3 servers vs 1, failover time.

Prints one JSON object. Everything runs against a real ``redis-server`` started by the bench
(loopback, AOF ``everysec``) and, for ``servers`` and ``failover``, real ComfyUI servers:

* ``core``: in-process governors, one on the SQLite store (single server) and one in cluster mode
  on Redis, with the same ``pending`` prompts: admission cost per prompt, dispatch + completion
  cost per prompt with ``pending`` queued (and with a tenth of it: dispatch must not grow with the
  queue), and the ratios Redis / SQLite measured in the same run.
* ``servers``: ``jobs`` short sleep prompts submitted through one server, first with one server in
  the cluster, then with three; wall time from the first submit to the last final state.
* ``failover``: a prompt of ``run_s`` seconds; the server running it is killed with SIGKILL; the
  seconds from the kill to its success on another server (``server_timeout`` given below).

Usage: ``.venv/bin/python bench/cluster.py [--quick] [--core-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import NullHost, emit, use_repo_packages

use_repo_packages()

from harness.client import ComfyClient  # noqa: E402
from harness.comfy_server import ComfyServer  # noqa: E402
from harness.graphs import sleep_prompt  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from restoration_governor.governor import cluster_setup  # noqa: E402
from restoration_governor.governor.admission import Ticket  # noqa: E402
from restoration_governor.governor.cluster_context import ClusterContext  # noqa: E402
from restoration_governor.governor.config import ConfigFile  # noqa: E402
from restoration_governor.governor.facade import Governor  # noqa: E402
from restoration_governor.governor.jobs import Priority  # noqa: E402
from restoration_governor.governor.leases import LeaseManager  # noqa: E402
from restoration_governor.governor.memory import ProbeChain, SystemMemoryProbe  # noqa: E402
from restoration_governor.governor.redis_leases import RedisLeaseManager  # noqa: E402
from restoration_governor.governor.store import SqliteJobStore  # noqa: E402

SERVER_TIMEOUT = 3.0


def make_governor(directory: Path, redis_url: str | None) -> Governor:
    directory.mkdir(parents=True, exist_ok=True)
    ctx = leases = None
    if redis_url:
        ctx = ClusterContext.from_env({"GOVERNOR_REDIS_URL": redis_url, "GOVERNOR_SERVER_ID": "bench",
                                       "GOVERNOR_CLUSTER": f"bench-{uuid.uuid4().hex[:6]}"})
        leases = RedisLeaseManager(ctx.redis, ctx.cluster, "bench-gpu", ctx.server_id)
    gov = Governor(config_file=ConfigFile(directory / "config.json"), store=SqliteJobStore(directory / "q.sqlite3"),
                   leases=leases or LeaseManager(directory / "leases", "bench"),
                   probe=ProbeChain([SystemMemoryProbe()]), host=NullHost(), instance_id="bench")
    if ctx is not None:
        cluster_setup.attach(gov, ctx, "bench-gpu")
        gov.rt.cluster.classes = frozenset({"RGTestSleep"})
        gov.rt.cluster.register("running")
    gov.update_config({"max_pending": 0, "max_pending_per_client": 0, "queue_timeout": 0, "memory_gate": False})
    gov.recover([], [], {})
    return gov


def admit(gov: Governor, i: int, clients: int = 8) -> None:
    client = f"client{i % clients}"
    ticket = Ticket(fair_key=client, priority=Priority(i % 3))
    prompt = {"1": {"class_type": "RGTestSleep", "inputs": {"seconds": 0.0, "tag": f"job{i}", "steps": 1}}}
    gov.reserve(client)
    ticket.reserved = True
    gov.admit(float(i), f"prompt-{i:06d}", prompt, {"client_id": client}, ["1"], {}, ticket)


def dispatch_complete(gov: Governor, n: int, rounds: int = 5) -> float:
    """Best of ``rounds`` (µs per prompt over ``n`` prompts): the machine is shared, so the minimum
    is the cost and the rest is other load."""
    best = float("inf")
    for _ in range(rounds):
        quiet(gov)
        started = time.perf_counter()
        for _ in range(n):
            d = gov.dispatch(0)
            assert d.job is not None
            gov.complete(d.job.prompt_id, True, None)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def quiet(gov: Governor) -> None:
    """Wait until Redis is not rewriting its AOF (a bulk admission triggers a rewrite)."""
    cluster = gov.rt.cluster
    if cluster is None:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and int(cluster.redis.info("persistence")["aof_rewrite_in_progress"]):
        time.sleep(0.1)


def core_of(directory: Path, redis_url: str | None, pending: int) -> dict:
    gov = make_governor(directory, redis_url)
    small = max(100, pending // 10)
    started = time.perf_counter()
    for i in range(small):
        admit(gov, i)
    admit_small = time.perf_counter() - started
    at_small = dispatch_complete(gov, 50)
    started = time.perf_counter()
    for i in range(small, pending + 150):
        admit(gov, i)
    admit_us = (admit_small + time.perf_counter() - started) / (pending + 150) * 1e6
    at_full = dispatch_complete(gov, 100)
    return {"admit_us": round(admit_us, 1), f"dispatch_complete_us_at_{small}": round(at_small, 1),
            f"dispatch_complete_us_at_{pending}": round(at_full, 1),
            "dispatch_growth": round(at_full / at_small, 2)}


def bench_core(base: Path, redis: RedisServer, pending: int) -> dict:
    sqlite = core_of(base / "sqlite", None, pending)
    cluster = core_of(base / "redis", redis.url, pending)
    ratios = {k: round(cluster[k] / sqlite[k], 2) for k in sqlite if k.endswith("_us") or "_us_at_" in k}
    return {"pending": pending, "sqlite": sqlite, "redis": cluster, "ratio_redis_over_sqlite": ratios}


# ---------------------------------------------------------------------------------------------
def start_servers(servers: list[ComfyServer]) -> None:
    threads = [threading.Thread(target=s.start) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def final(c: ComfyClient, prompt_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await c.get(f"/governor/jobs/{prompt_id}")
        if r.status == 200 and r.body["state"] in ("success", "failed", "cancelled"):
            return r.body
        await asyncio.sleep(0.05)
    raise TimeoutError(prompt_id)


async def run_batch(url: str, jobs: int, seconds: float) -> float:
    async with ComfyClient(url) as c:
        started = time.monotonic()
        ids = [await c.queue_prompt(sleep_prompt(seconds, tag=f"b{i}", steps=2)) for i in range(jobs)]
        for p in ids:
            await final(c, p)
        return time.monotonic() - started


async def failover(servers: dict[str, ComfyServer], run_s: float) -> dict:
    first = next(iter(servers.values()))
    async with ComfyClient(first.url) as c:
        prompt_id = await c.queue_prompt(sleep_prompt(run_s, tag="failover", steps=20))
        while True:
            body = (await c.get(f"/governor/jobs/{prompt_id}")).body
            if body["state"] == "running" and body.get("server"):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    victim = body["server"]
    servers[victim].kill()
    killed = time.monotonic()
    survivor = next(s for n, s in servers.items() if n != victim)
    async with ComfyClient(survivor.url) as c:
        done = await final(c, prompt_id)
    return {"server_timeout_s": SERVER_TIMEOUT, "run_s": run_s, "kill_to_success_s": round(time.monotonic() - killed, 2),
            "state": done["state"], "attempts": done["attempts"], "ran_on": done["server"], "killed": victim}


def bench_servers(base: Path, redis: RedisServer, jobs: int, seconds: float) -> dict:
    cluster = f"bench-{uuid.uuid4().hex[:6]}"
    servers = {n: ComfyServer(base / n, name=n, env={
        "GOVERNOR_REDIS_URL": redis.url, "GOVERNOR_CLUSTER": cluster, "GOVERNOR_SERVER_ID": n,
        "GOVERNOR_SERVER_TIMEOUT": str(SERVER_TIMEOUT), "GOVERNOR_STATE_DIR": str(base / f"{n}-state")})
        for n in ("s1", "s2", "s3")}
    try:
        start_servers([servers["s1"]])
        one = asyncio.run(run_batch(servers["s1"].url, jobs, seconds))
        start_servers([servers["s2"], servers["s3"]])
        time.sleep(1.0)  # their first heartbeats
        three = asyncio.run(run_batch(servers["s1"].url, jobs, seconds))
        fail = asyncio.run(failover(servers, 3.0))
    finally:
        for s in servers.values():
            s.kill()
    return {"servers": {"jobs": jobs, "job_s": seconds, "one_server_s": round(one, 2), "three_servers_s": round(three, 2),
                        "speedup": round(one / three, 2)}, "failover": fail}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--core-only", action="store_true")
    args = parser.parse_args()
    pending = 2000 if args.quick else 10000
    with tempfile.TemporaryDirectory(prefix="rg-bench-cluster-") as tmp:
        base = Path(tmp)
        redis = RedisServer(base / "redis", name="redis-bench").start()
        try:
            out: dict = {"core": bench_core(base / "core", redis, pending)}
            if not args.core_only:
                out.update(bench_servers(base / "servers", redis, 12 if args.quick else 30, 0.5 if args.quick else 1.0))
        finally:
            redis.kill()
    emit(out)


if __name__ == "__main__":
    main()
