"""Command delivery across replicas: a launch queued through replica A → the long poll of its agent
parked on replica B (two ``octotui server`` processes on one PostgreSQL)."""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.common import PLAN, Metric, Result, latency_runs, scratch
from tests.support.postgres import dedicated_cluster
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until

TITLE = "Command delivery across replicas"
TARGET = "< 100 ms p99"
METHOD = """a PostgreSQL cluster of its own (Debian's, on loopback) and two real `octotui server`
processes on one database (`--database`), each with its own data dir. A minimal agent-protocol
client registers on replica B, heartbeats B (8 cores, Docker available) and keeps a long poll open
on B's `GET /agents/{id}/commands`. The operator side creates a one-container test through replica A
(`POST /tests`), which queues a launch for that agent in A's store transaction, with a NOTIFY: B's
LISTEN connection wakes its reader, which reads the change and the command from the tables and
hands it to the parked poll. The delay is from the moment A's POST is written to the moment B's poll
answer holding that command is read (an upper bound: it includes A's placement and store write).
The client acknowledges each launch as failed (capacity stays free) and polls again; each sample
waits a random 50-150 ms first so that the poll is parked on B."""


def _heartbeat(now: float) -> dict[str, object]:
    host = {"ts": now, "cpu_percent": 1.0, "cpu_per_core": [1.0] * 8, "memory_percent": 10.0,
            "memory_used": 1 << 30, "memory_total": 32 << 30}  # fmt: skip
    return {"host": host, "docker": {"available": True, "version": "20.10"}, "containers": [], "complete": True}


@contextlib.contextmanager
def _replicas(tmp: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with dedicated_cluster() as cluster:
        dsn = cluster.dsn(cluster.create_database())
        a = ServerProcess(tmp / "a", "--log-level", "warning", "--database", dsn)
        b = ServerProcess(tmp / "b", "--log-level", "warning", "--database", dsn)
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            b.stop()
            a.stop()


def _once(samples: int) -> list[float]:
    with scratch("replicas") as tmp, _replicas(tmp) as (a, b):
        api = a.client()
        provider = api.post("/providers", json={"name": "bench"}).raise_for_status().json()
        base = b.url + "/api/v1"
        # The provider reaches B through the change table: register once it is known there.
        body = {"name": "probe", "location": "local", "cpu_count": 8, "memory_total": 32 << 30}

        def register() -> httpx.Response | None:
            r = httpx.post(
                f"{base}/agents/register", headers={"Authorization": f"Bearer {provider['token']}"}, json=body
            )
            return r if r.status_code == 200 else None

        reg = wait_until(register, timeout=10, what="provider known on B")
        ident = reg.json()
        auth = {"Authorization": f"Bearer {ident['agent_token']}"}
        agent = httpx.Client(base_url=base, headers=auth, timeout=60)
        agent.post(f"/agents/{ident['agent_id']}/heartbeat", json=_heartbeat(time.time())).raise_for_status()
        wait_until(lambda: api.get(f"/agents/{ident['agent_id']}").json().get("docker"), timeout=10, what="on A")
        stop = threading.Event()

        def beat() -> None:
            with httpx.Client(base_url=base, headers=auth, timeout=30) as hb:
                while not stop.wait(2.0):
                    try:
                        hb.post(f"/agents/{ident['agent_id']}/heartbeat", json=_heartbeat(time.time()))
                    except httpx.HTTPError:
                        return

        threading.Thread(target=beat, daemon=True).start()
        received: list[tuple[float, list[dict[str, object]]]] = []
        arrived = threading.Condition()
        polling = threading.Event()

        def poll() -> None:
            fresh = "true"
            while not stop.is_set():
                polling.set()
                try:
                    r = agent.get(f"/agents/{ident['agent_id']}/commands", params={"timeout": "25", "fresh": fresh})
                except httpx.HTTPError:
                    return
                at = time.perf_counter()
                fresh = "false"
                cmds = r.json()
                if cmds:
                    for c in cmds:
                        agent.post(f"/agents/{ident['agent_id']}/commands/{c['id']}/ack",
                                   json={"ok": False, "error": "benchmark probe"})  # fmt: skip
                    with arrived:
                        received.append((at, cmds))
                        arrived.notify_all()

        threading.Thread(target=poll, daemon=True).start()
        spec = {"name": "probe", "plan": PLAN, "provider": provider["id"], "containers": 1, "image": "none:bench"}
        delays: list[float] = []
        try:
            for _ in range(samples):
                polling.wait(10)
                polling.clear()
                time.sleep(random.uniform(0.05, 0.15))
                with arrived:
                    before = len(received)
                t0 = time.perf_counter()
                response = api.post("/tests", json=spec)
                if response.status_code == 409:  # the failed launch's container not yet ended on A: retry
                    time.sleep(0.2)
                    continue
                response.raise_for_status()
                cid = response.json()["containers"][0]["id"]
                with arrived:
                    arrived.wait_for(functools.partial(_has, received, before, cid), timeout=10)
                    got = next((at for at, cmds in received[before:] if any(c["container_id"] == cid for c in cmds)),
                               None)  # fmt: skip
                if got is None:
                    raise AssertionError("a launch was not delivered across replicas within 10 s")
                delays.append((got - t0) * 1000)
        finally:
            stop.set()
        agent.close()
        api.close()
        return delays


def _has(received: list[tuple[float, list[dict[str, object]]]], before: int, cid: str) -> bool:
    return any(c["container_id"] == cid for _, cmds in received[before:] for c in cmds)


def run(runs: int, quick: bool) -> Result:
    samples = 50 if quick else 200
    figures, delays = latency_runs(runs, lambda i: _once(samples))
    p50, p99, mx = figures["p50"], figures["p99"], figures["max"]
    details = [
        f"run {i + 1}: {len(q)} commands; A's POST written → B's poll answer read: p50 {p50[i]:.1f} ms,"
        f" p99 {p99[i]:.1f} ms, max {mx[i]:.1f} ms"
        for i, q in enumerate(delays)
    ]
    return Result(
        figure="replica_commands", title=TITLE, target=TARGET, method=METHOD + f" {samples} commands per run.",
        metrics=[
            Metric("queued on A → received on B, p99", "ms", p99, 100.0),
            Metric("queued on A → received on B, p50", "ms", p50),
            Metric("queued on A → received on B, max", "ms", mx),
        ],
        details=details,
    )  # fmt: skip
