"""Figure 4: command delivery to a waiting agent: command queued → the agent's long poll answers."""

from __future__ import annotations

import functools
import random
import threading
import time

import httpx

from bench.common import PLAN, Metric, Result, latency_runs, percentile, scratch, server_with_provider

TITLE = "Command delivery to a waiting agent"
TARGET = "< 100 ms p99"
METHOD = """a real server; a minimal agent-protocol client using the real HTTP endpoints registers
with the provider token, heartbeats (8 cores, Docker available) so it is online and placeable,
and keeps a long poll open on `GET /agents/{id}/commands` in a thread of its own. The operator side
then creates a one-container test (`POST /tests`), which queues a launch for that agent; the
delay is from the moment the POST is written to the moment the poll's answer holding that
command is read (an upper bound: it includes the POST's own handling, placement and the store
write before the answer). The client acknowledges the launch as failed, so the container ends
and capacity stays free, and polls again; each sample waits a random 50-150 ms first so that
the poll is parked on the server."""


def _heartbeat(now: float) -> dict[str, object]:
    host = {"ts": now, "cpu_percent": 1.0, "cpu_per_core": [1.0] * 8, "memory_percent": 10.0,
            "memory_used": 1 << 30, "memory_total": 32 << 30}  # fmt: skip
    return {"host": host, "docker": {"available": True, "version": "20.10"}, "containers": [], "complete": True}


def _once(samples: int) -> dict[str, list[float]]:
    with scratch("delivery") as tmp, server_with_provider(tmp) as (server, api, provider):
        base = server.url + "/api/v1"
        reg = httpx.post(
            f"{base}/agents/register",
            headers={"Authorization": f"Bearer {provider['token']}"},
            json={"name": "probe", "location": "local", "cpu_count": 8, "memory_total": 32 << 30},
        )
        reg.raise_for_status()
        ident = reg.json()
        auth = {"Authorization": f"Bearer {ident['agent_token']}"}
        agent = httpx.Client(base_url=base, headers=auth, timeout=60)
        agent.post(f"/agents/{ident['agent_id']}/heartbeat", json=_heartbeat(time.time())).raise_for_status()
        stop = threading.Event()

        def beat() -> None:
            with httpx.Client(base_url=base, headers=auth, timeout=30) as hb:
                while not stop.wait(2.0):
                    try:
                        hb.post(f"/agents/{ident['agent_id']}/heartbeat", json=_heartbeat(time.time()))
                    except httpx.HTTPError:
                        return

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
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
                    return  # the run is over: the client or the server closed
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

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        spec = {"name": "probe", "plan": PLAN, "provider": provider["id"], "containers": 1, "image": "none:bench"}
        queued_to_received: list[float] = []
        answered_to_received: list[float] = []
        try:
            for _ in range(samples):
                polling.wait(10)
                polling.clear()
                time.sleep(random.uniform(0.05, 0.15))
                with arrived:
                    before = len(received)
                t0 = time.perf_counter()
                response = api.post("/tests", json=spec)
                t1 = time.perf_counter()
                response.raise_for_status()
                cid = response.json()["containers"][0]["id"]
                with arrived:
                    arrived.wait_for(functools.partial(_more, received, before), timeout=10)
                    got = next(
                        (at for at, cmds in received[before:] if any(c["container_id"] == cid for c in cmds)), None
                    )
                if got is None:
                    raise AssertionError("a launch was not delivered within 10 s")
                queued_to_received.append((got - t0) * 1000)
                answered_to_received.append((got - t1) * 1000)
        finally:
            stop.set()
            # the parked poll ends with the server; the threads are daemons
        agent.close()
        return {"queued": queued_to_received, "answered": answered_to_received}


def _more(received: list[tuple[float, list[dict[str, object]]]], before: int) -> bool:
    return len(received) > before


def run(runs: int, quick: bool) -> Result:
    samples = 50 if quick else 200
    after: list[float] = []

    def once(i: int) -> list[float]:
        got = _once(samples)
        after.append(percentile(got["answered"], 50))
        return got["queued"]

    figures, queued = latency_runs(runs, once)
    p50, p99, mx = figures["p50"], figures["p99"], figures["max"]
    details = [
        f"run {i + 1}: {len(q)} commands; POST written → received p50 {p50[i]:.1f} ms, p99 {p99[i]:.1f} ms, "
        f"max {mx[i]:.1f} ms; POST answered → received p50 {after[i]:.1f} ms (negative: the agent had it first)"
        for i, q in enumerate(queued)
    ]
    return Result(
        figure="command_delivery", title=TITLE, target=TARGET, method=METHOD + f" {samples} commands per run.",
        metrics=[
            Metric("queued → received, p99", "ms", p99, 100.0),
            Metric("queued → received, p50", "ms", p50),
            Metric("queued → received, max", "ms", mx),
        ],
        details=details,
    )  # fmt: skip
