"""The agent's monitors scheduler against real targets: reports kept until a heartbeat is answered,
a bounded buffer, assignments replaced and stopped, hanging targets cut at their timeout without
holding up the others, credentials never logged, and libraries loaded only for the kinds that run."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.link import ServerLink
from agent.monitors import MonitorScheduler
from agent.settings import parse_settings
from agent.state import Identity
from octotui.protocol import Heartbeat, HostSample
from octotui.protocol.monitors import MonitorAssignment, MonitorCredentials, MonitorReport
from tests.support.faultproxy import FaultProxy
from tests.support.peers import Nginx, Sshd
from tests.support.processes import ROOT, AgentProcess, ServerProcess
from tests.support.waiting import wait_until, wait_until_async


def assignment(ident: str, kind: str, target: str, interval: float = 0.2, **extra: Any) -> MonitorAssignment:
    timeout = extra.pop("timeout", 2.0)
    return MonitorAssignment(id=ident, kind=kind, target=target, interval=interval, timeout=timeout, **extra)


@pytest.fixture
async def scheduler() -> AsyncIterator[MonitorScheduler]:
    running = MonitorScheduler()
    yield running
    await running.aclose()


def reports(scheduler: MonitorScheduler) -> dict[str, MonitorReport]:
    return {r.id: r for r in scheduler.take({})}


async def until_report(scheduler: MonitorScheduler, ident: str, samples: int = 0, what: str = "") -> MonitorReport:
    async def ready() -> MonitorReport | None:
        report = reports(scheduler).get(ident)
        return report if report is not None and len(report.samples) >= samples else None

    found: MonitorReport = await wait_until_async(ready, timeout=20, what=what or f"a report of {ident}")
    return found


async def test_samples_stay_until_a_heartbeat_is_answered(scheduler: MonitorScheduler, nginx_peer: Nginx) -> None:
    scheduler.apply([assignment("web", "nginx", f"{nginx_peer.url}/status")], revision=3)
    assert scheduler.revision == 3
    await until_report(scheduler, "web", samples=2)
    marks: dict[str, int] = {}
    (sent,) = scheduler.take(marks)
    assert sent.state == "ok" and sent.error is None and "active" in sent.samples[0].values
    # the heartbeat carrying them was lost: the next one carries them again
    (again,) = scheduler.take({})
    assert again.samples[: len(sent.samples)] == sent.samples
    scheduler.delivered(marks)  # answered: only what came after remains
    (after,) = scheduler.take({})
    assert all(s.ts > sent.samples[-1].ts for s in after.samples)
    scheduler.apply(None, revision=None)  # an answer without assignments: keep running
    assert "web" in reports(scheduler) and scheduler.revision == 3


async def test_an_agent_says_it_runs_monitors_holding_none(scheduler: MonitorScheduler, nginx_peer: Nginx) -> None:
    """Revision 0, never None (the server takes None for an agent older than monitors, given none)."""
    host = HostSample(ts=1.0, cpu_percent=1.0, memory_percent=1.0, memory_total=1)
    beat = Heartbeat(host=host, monitors=scheduler.take({}), monitor_revision=scheduler.revision)
    assert b'"monitor_revision":0' in beat.model_dump_json().encode()
    scheduler.apply([assignment("web", "nginx", f"{nginx_peer.url}/status")], revision=5)
    scheduler.apply([], revision=None)  # emptied by an answer without a revision: none held again
    assert scheduler.revision == 0 and scheduler.monitors == {}


async def test_buffer_is_bounded_dropping_the_oldest(nginx_peer: Nginx) -> None:
    scheduler = MonitorScheduler(buffer=3)
    try:
        scheduler.apply([assignment("web", "nginx", f"{nginx_peer.url}/status", interval=0.05)], revision=1)
        await wait_until_async(lambda: _dropped(scheduler), timeout=20, what="a dropped sample")
        (report,) = scheduler.take({})
        assert len(report.samples) == 3
        assert report.samples == sorted(report.samples, key=lambda s: s.ts)  # the newest kept, in order
    finally:
        await scheduler.aclose()


async def _dropped(scheduler: MonitorScheduler) -> bool:
    return scheduler.monitors["web"].dropped_samples >= 2


async def test_assignments_replaced_and_stopped(scheduler: MonitorScheduler, nginx_peer: Nginx) -> None:
    status, metrics = f"{nginx_peer.url}/status", f"{nginx_peer.url}/metrics.txt"
    scheduler.apply([assignment("a", "nginx", status), assignment("b", "prometheus", metrics)], revision=1)
    await until_report(scheduler, "a", samples=1)
    await until_report(scheduler, "b", samples=1)
    old_a, old_b = scheduler.monitors["a"].task, scheduler.monitors["b"].task
    scheduler.apply([assignment("a", "http", status)], revision=2)  # a changes kind, b goes
    assert old_a is not None and old_b is not None
    await asyncio.wait([old_a, old_b], timeout=10)
    assert old_a.cancelled() and old_b.cancelled()

    async def probed() -> bool:
        report = reports(scheduler).get("a")
        return report is not None and any("status" in s.values for s in report.samples)

    await wait_until_async(probed, what="monitor a as an http probe")
    assert set(reports(scheduler)) == {"a"}
    scheduler.apply([], revision=3)  # run none
    assert reports(scheduler) == {} and scheduler.monitors == {}


async def test_hanging_targets_time_out_and_hold_up_nothing(
    scheduler: MonitorScheduler, nginx_peer: Nginx, hanging_port: int
) -> None:
    creds = MonitorCredentials(username="u", password="p")
    hanging = [
        assignment("prom", "prometheus", f"http://127.0.0.1:{hanging_port}/metrics", timeout=0.5),
        assignment("pg", "postgresql", f"127.0.0.1:{hanging_port}/db", timeout=0.5, credentials=creds),
        assignment("ssh", "linux-ssh", f"127.0.0.1:{hanging_port}", timeout=0.5, credentials=creds),
    ]
    scheduler.apply([*hanging, assignment("web", "nginx", f"{nginx_peer.url}/status", interval=0.1)], revision=1)
    for ident in ("prom", "pg", "ssh"):
        report = await until_report(scheduler, ident)
        assert (report.state, report.error) == ("error", "timed out after 0.5 s"), ident
    web = await until_report(scheduler, "web", samples=5, what="the nginx monitor going on meanwhile")
    assert web.state == "ok"


async def test_a_bad_assignment_says_why_each_interval(scheduler: MonitorScheduler) -> None:
    scheduler.apply([assignment("bad", "prometheus", "http://127.0.0.1:9/", metrics=["a{b=}"])], revision=1)
    report = await until_report(scheduler, "bad")
    assert report.state == "error" and (report.error or "").startswith("bad metric selector")


async def test_credentials_never_logged(
    scheduler: MonitorScheduler, sshd_peer: Sshd, nginx_peer: Nginx, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = f"127.0.0.1:{sshd_peer.port}"
    wrong = MonitorCredentials(username=sshd_peer.user, password="Wrong-Secret-913")
    right = MonitorCredentials(username=sshd_peer.user, password=sshd_peer.password)
    basic = MonitorCredentials(username="web", password="Basic-Secret-527")
    scheduler.apply(
        [assignment("bad", "linux-ssh", target, credentials=wrong), assignment("good", "linux-ssh", target,
         credentials=right), assignment("web", "http", f"{nginx_peer.url}/status", credentials=basic)],
        revision=1,
    )  # fmt: skip
    assert (await until_report(scheduler, "bad")).error == "authentication failed"
    assert (await until_report(scheduler, "good", samples=2)).state == "ok"
    assert (await until_report(scheduler, "web", samples=1)).state == "ok"
    text = caplog.text + json.dumps([r.model_dump(mode="json") for r in scheduler.take({})])
    assert "authentication failed" in text  # the log says what happened...
    for secret in ("Wrong-Secret-913", sshd_peer.password, "Basic-Secret-527"):
        assert secret not in text  # ...never with what was tried


FOOTPRINT = """
import asyncio, json, sys
import agent.__main__, agent.runtime
from agent.link import ServerLink
from agent.monitors import MonitorScheduler
from agent.settings import parse_settings
from agent.state import Identity
from octotui.protocol import Heartbeat, HostSample
from octotui.protocol.monitors import MonitorAssignment
LIBS = ("prometheus_client", "asyncssh", "psycopg")
idle = [m for m in LIBS if m in sys.modules]
async def main():
    s = MonitorScheduler()
    s.apply([MonitorAssignment(id="p", kind="prometheus", target=sys.argv[1], interval=0.1, timeout=2)], 1)
    for _ in range(200):
        if s.take({}):
            break
        await asyncio.sleep(0.05)
    await s.aclose()
asyncio.run(main())
print(json.dumps({"idle": idle, "prometheus": [m for m in LIBS if m in sys.modules]}))
"""


def test_libraries_load_only_for_the_kinds_that_run(nginx_peer: Nginx) -> None:
    done = subprocess.run([sys.executable, "-c", FOOTPRINT, f"{nginx_peer.url}/metrics.txt"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=True)  # fmt: skip
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"idle": [], "prometheus": ["prometheus_client"]}


def test_end_to_end_through_a_real_server_and_agent(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, node_exporter: str, sshd_peer: Sshd,
    hanging_port: int,
) -> None:  # fmt: skip
    """The server hands a real agent process its monitors; their states, values and errors come back
    over heartbeats, a hanging target holds up none of them, and no credential reaches the log."""
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
        agent = AgentProcess(server.url, provider["token"], tmp_path / "agent", "paris", "mon1").start()
        agents.append(agent)
        agent_id = wait_until(lambda: [a["id"] for a in http.get("/agents").json()], what="the agent")[0]
        secret = "Wrong-Secret-e2e-771"
        made = {}
        for body in (
            {"name": "node", "kind": "prometheus", "target": node_exporter, "metrics": ["node_load1"]},
            {"name": "ssh", "kind": "linux-ssh", "target": f"127.0.0.1:{sshd_peer.port}",
             "credentials": {"username": sshd_peer.user, "password": secret}},
            {"name": "stuck", "kind": "http", "target": f"http://127.0.0.1:{hanging_port}/", "timeout": 1},
        ):  # fmt: skip
            answer = http.post("/monitors", json={"agent": agent_id, "interval": 1, **body})
            assert answer.status_code == 201, answer.text
            made[body["name"]] = answer.json()["id"]

        def monitor(name: str) -> dict[str, Any]:
            return http.get(f"/monitors/{made[name]}").raise_for_status().json()  # type: ignore[no-any-return]

        node = wait_until(lambda: (m := monitor("node"))["state"] == "ok" and "node_load1" in m["last_values"] and m,
                          timeout=30, what="node exporter's values on the server")  # fmt: skip
        assert node["error"] is None
        assert wait_until(lambda: monitor("ssh")["error"], timeout=30, what="the ssh error") == "authentication failed"
        assert wait_until(lambda: monitor("stuck")["error"], timeout=30, what="the timeout") == "timed out after 1 s"
        samples = http.get(f"/monitors/{made['node']}/metrics").raise_for_status().json()["samples"]
        assert samples and all("node_load1" in s["values"] for s in samples)
        assert http.get(f"/agents/{agent_id}").json()["status"] == "online"  # heartbeats went on
        assert http.delete(f"/monitors/{made['stuck']}").status_code == 204
        wait_until(lambda: f"monitor {made['stuck']} stopped" in agent.log(), what="the agent stopping it")
    assert secret not in agent.log() and sshd_peer.password not in agent.log()


async def test_an_assignment_this_agent_cannot_run_leaves_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer server's kind: the answer's other assignments and its stop list still apply."""
    good = {"id": "m-good", "kind": "http", "target": "http://127.0.0.1:9/", "interval": 5, "timeout": 2}
    newer = {**good, "id": "m-newer", "kind": "mysql", "credentials": {"username": "u", "password": "Newer-Secret"}}
    answer = json.dumps({"ok": True, "stop": ["c-1"], "monitors": [good, newer], "monitor_revision": 7}).encode()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length")), b"0"))  # fmt: skip
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(answer), answer))  # fmt: skip
        await writer.drain()
        writer.close()

    peer = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    link = ServerLink(parse_settings(["--server", f"http://127.0.0.1:{port}", "--state-dir", str(tmp_path)], env={}))
    host = HostSample(ts=1.0, cpu_percent=1.0, memory_percent=1.0, memory_total=1)
    try:
        got = await link.heartbeat(Identity("a-1", "tok", f"http://127.0.0.1:{port}"), Heartbeat(host=host))
    finally:
        await link.aclose()
        peer.close()
    assert got.stop == ["c-1"] and got.monitor_revision == 7
    assert [m.id for m in got.monitors or []] == ["m-good"]
    assert "m-newer" in caplog.text and "Newer-Secret" not in caplog.text


async def test_a_beat_carries_a_bounded_number_of_values(nginx_peer: Nginx) -> None:
    """After an outage the backlog goes up over several beats, oldest first, none lost or repeated."""
    scheduler = MonitorScheduler(values_per_beat=16)
    try:
        scheduler.apply([assignment("web", "nginx", f"{nginx_peer.url}/status", interval=0.05)], revision=1)

        async def backlog() -> bool:
            return len(scheduler.monitors["web"].buffer) >= 8

        await wait_until_async(backlog, what="a backlog of samples")
        task = scheduler.monitors["web"].task
        assert task is not None
        task.cancel()  # no more collections: the backlog alone remains
        await asyncio.wait([task], timeout=10)
        sent: list[float] = []
        for _ in range(20):
            marks: dict[str, int] = {}
            found = scheduler.take(marks)
            if not found or not found[0].samples:
                break
            assert sum(len(s.values) for s in found[0].samples) <= 16
            sent += [s.ts for s in found[0].samples]
            scheduler.delivered(marks)
        assert len(sent) >= 8 and sent == sorted(set(sent))
    finally:
        await scheduler.aclose()


def test_samples_taken_while_the_server_is_unreachable_arrive_after(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, node_exporter: str
) -> None:
    """Unsent samples stay on the agent until a heartbeat carrying them is answered: a 3 s network
    drop between agent and server (a relay refusing connections) leaves no gap in the series."""
    with server.client() as http, FaultProxy(("127.0.0.1", server.port)) as relay:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
        agent = AgentProcess(relay.url, provider["token"], tmp_path / "agent", "paris", "mon2").start()
        agents.append(agent)
        agent_id = wait_until(lambda: [a["id"] for a in http.get("/agents").json()], what="the agent")[0]
        body = {"name": "node", "agent": agent_id, "kind": "prometheus", "target": node_exporter, "interval": 1,
                "metrics": ["node_load1"]}  # fmt: skip
        monitor_id = http.post("/monitors", json=body).raise_for_status().json()["id"]
        wait_until(lambda: http.get(f"/monitors/{monitor_id}").json()["state"] == "ok", timeout=30, what="ok")
        down_at = time.time()
        relay.refuse = True
        relay.kill_all()
        wait_until(lambda: "server unreachable" in agent.log(), timeout=20, what="the agent losing the server")
        # the scenario's length (under the server's 6 s offline threshold), not a synchronisation
        wait_until(lambda: time.time() > down_at + 3, what="a 3 s drop")
        up_at = time.time()
        relay.heal()

        def during_drop() -> list[float]:
            samples = http.get(f"/monitors/{monitor_id}/metrics").json()["samples"]
            return [s["ts"] for s in samples if down_at + 0.5 < s["ts"] < up_at - 0.5]

        assert len(wait_until(during_drop, timeout=30, what="the drop's samples on the server")) >= 1
