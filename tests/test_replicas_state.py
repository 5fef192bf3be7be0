"""What used to stay per replica follows across replicas on one PostgreSQL (issue 14): per-label
figures and held criteria, monitors' samples, alarms and the monitors tests name, an agent's deletion,
and a container another replica launched reported here first (``octotui/server/replica/``).
Each test runs two real ``octotui server`` processes (or two in-process apps) on a fresh database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from octotui.server.domain import alarms
from octotui.server.domain.monitors import AGENT_DELETED
from tests.support.app import Starter
from tests.support.monitorkit import beat_monitors, mreport, prom_body, sample
from tests.support.processes import ServerProcess
from tests.support.replicas import LabelBeats, agent_on, lease_holders, provider, replicas, running
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import PLAN, ack, poll, report
from tests.support.wireagent import WireAgent

pytestmark = [pytest.mark.timeout(120)]


def _get(server: ServerProcess, path: str) -> Any:
    with server.client() as http:
        answer = http.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


def _poll_fresh(agent: WireAgent) -> list[dict[str, Any]]:
    """Every command queued for the agent (those handed out before too)."""
    answer = agent.http.get(f"/agents/{agent.id}/commands", params={"timeout": 0, "fresh": "true"}, headers=agent.auth)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _monitor_beat(agent: WireAgent, revision: int, *reports: dict[str, Any]) -> dict[str, Any]:
    """One heartbeat of ``agent`` holding monitor ``revision``, with monitor ``reports``: the answer."""
    host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 10.0, "memory_total": 2**33}
    body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": [], "complete": False,
            "monitors": list(reports), "monitor_revision": revision}  # fmt: skip
    answer = agent.http.post(f"/agents/{agent.id}/heartbeat", json=body, headers=agent.auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_labels_reported_through_one_replica_are_read_through_the_other(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = agent_on(b, provider(a), a)
        container = running(agent, a)
        beats = LabelBeats(agent, container, ms=40.0)
        try:
            test_id = container["test_id"]
            on_b = wait_until(lambda: _get(b, f"/tests/{test_id}/labels"), timeout=10, what="labels on b")
            got = wait_until(lambda: _get(a, f"/tests/{test_id}/labels"), timeout=5, what="labels on a")
            assert (
                [(x["label"], x["avg_ms"]) for x in got]
                == [(x["label"], x["avg_ms"]) for x in on_b]
                == [("login", 40.0)]
            )
        finally:
            beats.end()
        agent.close()


def test_a_held_criterion_on_the_lease_holder_judges_labels_reported_to_the_other(
    tmp_path: Path, pg_database: str
) -> None:
    with replicas(tmp_path, pg_database) as servers:
        (holder_port,) = wait_until(lambda: lease_holders(pg_database) or None, timeout=10, what="a lease holder")
        (holder,) = [s for s in servers if s.port == holder_port]
        (other,) = [s for s in servers if s is not holder]
        agent = agent_on(other, provider(holder), holder)
        container = running(agent, holder, criteria=["avg of login<100ms for 2s"])
        beats = LabelBeats(agent, container, ms=300.0)  # broken from the start, reported to the other
        try:
            wait_until(lambda: any(container["container_id"] in x["stop"] for x in beats.answers), timeout=20,
                       what="the held criterion stopping the test")  # fmt: skip
        finally:
            beats.end()
        agent.beat({**container, "state": "finished", "exit_code": 0})
        for server in servers:
            t = wait_until(lambda: (g := _get(server, f"/tests/{container['test_id']}"))["state"] == "failed" and g,  # noqa: B023
                           timeout=10, what="failed")  # fmt: skip
            assert t["reason"].startswith("stopped by the criterion 'avg of login<100ms for 2s'"), t["reason"]
        agent.close()


def test_monitor_samples_and_one_alarm_reach_both_replicas(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = agent_on(a, provider(b), b)
        body = prom_body(agent.id, thresholds=[{"metric": "load1", "severity": "warning", "above": 4}])
        with b.client() as http:
            made = http.post("/monitors", json=body)
            assert made.status_code == 201, made.text
        mid = made.json()["id"]
        revision = wait_until(lambda: _monitor_beat(agent, 0).get("monitor_revision"), timeout=10, what="assigned")
        now = time.time()
        _monitor_beat(agent, revision, mreport(mid, sample(now - 2, load1=1.0), sample(now - 1, load1=9.0)))
        got = wait_until(lambda: _get(b, f"/monitors/{mid}/metrics")["samples"], timeout=5, what="samples on b")
        assert [(s["ts"], s["values"]) for s in got] == [(now - 2, {"load1": 1.0}), (now - 1, {"load1": 9.0})]
        shown = wait_until(lambda: (m := _get(b, f"/monitors/{mid}"))["alarms"] and m, timeout=5, what="alarm on b")
        assert shown["last_values"] == {"load1": 9.0} and shown["alarms"] == 1
        _monitor_beat(agent, revision, mreport(mid, sample(now, load1=8.0)))  # still above: the same alarm
        time.sleep(1.5)  # not synchronisation: a second alarm, were one raised, would be written by then
        for server in (a, b):
            raised = _get(server, "/alarms")
            assert [(x["monitor"], x["metric"], x["ended_at"]) for x in raised] == [(mid, "load1", None)]
        _monitor_beat(agent, revision, mreport(mid, sample(time.time(), load1=1.0)))  # back in bounds: cleared
        wait_until(lambda: _get(b, f"/monitors/{mid}")["alarms"] == 0, timeout=5, what="cleared on b")
        # Its agent deleted through b: its monitors read "agent deleted" on a too (and run nowhere).
        with b.client() as http:
            assert http.delete(f"/agents/{agent.id}").status_code in (200, 204)
        shown = wait_until(lambda: (m := _get(a, f"/monitors/{mid}"))["state"] == "error" and m, timeout=5,
                           what="agent deleted on a")  # fmt: skip
        assert shown["error"] == AGENT_DELETED
        agent.close()


def test_a_test_naming_monitors_launched_on_one_replica_starts_them_and_stops_once_on_another(
    tmp_path: Path, pg_database: str
) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = agent_on(b, provider(a), a)
        body = prom_body(agent.id, mode="tests", thresholds=[{"metric": "up", "severity": "critical", "below": 1}])
        with a.client() as http:
            made = http.post("/monitors", json=body)
            assert made.status_code == 201, made.text
        mid = made.json()["id"]
        time.sleep(1.5)  # not synchronisation: b has read the monitor; of mode tests, it runs for none yet
        assert _monitor_beat(agent, 0).get("monitors") is None
        container = running(agent, a, monitors=[mid], stop_on_critical=True)
        got = wait_until(lambda: _monitor_beat(agent, 0).get("monitors"), timeout=5, what="the monitor runs on b")
        assert [m["id"] for m in got] == [mid]
        agent.beat(container)
        answer = _monitor_beat(agent, 0, mreport(mid, sample(time.time(), up=0.0)))
        assert answer.get("monitors") is not None
        test_id = container["test_id"]
        stop = wait_until(lambda: [c for c in _poll_fresh(agent) if c["kind"] == "stop"], timeout=10, what="a stop")
        assert len(stop) == 1, stop  # asked once: one replica judged the sample
        for server in (a, b):
            reason = wait_until(lambda: _get(server, f"/tests/{test_id}")["reason"], timeout=10, what="the reason")  # noqa: B023
            assert "by a critical alarm: node up = 0" in reason, reason
        wait_until(lambda: _get(a, f"/monitors/{mid}")["alarms"] == 1, timeout=5, what="the alarm on a")
        assert len(_get(a, f"/alarms?test={test_id}")) == len(_get(b, f"/alarms?test={test_id}")) == 1
        agent.close()


async def test_a_container_launched_through_one_replica_reported_first_to_another_is_read_not_stopped(
    pg_database: str, start_server: Starter
) -> None:
    # pg_database first: the servers stop before their database is dropped.
    a = await start_server(database=pg_database)
    b = await start_server(database=pg_database)

    async def both_see_each_other() -> bool:
        return all(e.ctl.replica is not None and e.ctl.replica.ready and e.ctl.replica.others for e in (a, b))

    await wait_until_async(both_see_each_other, timeout=10, what="both replicas up, each seeing the other")
    token = (await a.provider("lab"))["token"]
    agent_id, agent_token = await a.register(token)
    await a.beat(agent_id, agent_token)
    await wait_until_async(lambda: _async(agent_id in b.ctl.agents), timeout=5, what="the agent known on b")
    replica = b.ctl.replica
    assert replica is not None
    replica._tasks[0].cancel()  # b reads no change of a from now on (as if a moment behind)
    made = await a.http.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1})
    assert made.status_code == 201, made.text
    (cmd,) = await poll(a, agent_id, agent_token)
    await ack(a, agent_id, agent_token, cmd["id"])
    stops: list[str] = []

    async def known_on_b() -> bool:
        stops.extend((await b.beat(agent_id, agent_token, containers=[report(cmd, "running")]))["stop"])
        return cmd["container_id"] in b.ctl.containers

    await wait_until_async(known_on_b, timeout=10, what="the container read by b on demand")
    assert stops == []
    assert (await b.http.get(f"/tests/{cmd['test_id']}")).json()["state"] == "running"
    # A true stray (no record anywhere) is stopped at its first report once read, not after a grace.
    stray = {"container_id": "c-nobody", "test_id": "t-nobody", "state": "running"}
    assert (await b.beat(agent_id, agent_token, containers=[stray]))["stop"] == []  # read now
    await wait_until_async(lambda: _async(not replica.strays.reading), timeout=5, what="the read done")
    assert (await b.beat(agent_id, agent_token, containers=[stray]))["stop"] == ["c-nobody"]


async def test_a_running_tests_monitor_series_kept_by_one_replica_is_read_through_another(
    pg_database: str, start_server: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarms, "SERIES_SAVE_EVERY", 0.2)  # the replica the samples reach stores them at once
    a = await start_server(database=pg_database)
    b = await start_server(database=pg_database)
    token = (await a.provider("lab"))["token"]
    agent_id, agent_token = await a.register(token)
    await a.beat(agent_id, agent_token)
    made = await a.http.post("/monitors", json=prom_body(agent_id, mode="tests"))
    assert made.status_code == 201, made.text
    mid = made.json()["id"]
    body = {"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1, "monitors": [mid]}
    launched = await a.http.post("/tests", json=body)
    assert launched.status_code == 201, launched.text
    test_id = launched.json()["id"]
    now = time.time()
    await beat_monitors(a, agent_id, agent_token, 0, [mreport(mid, sample(now - 1, up=1.0), sample(now, up=0.5))])

    async def series_on_b() -> Any:
        got = await b.http.get(f"/tests/{test_id}/monitors")
        return got.status_code == 200 and got.json()["series"]

    (line,) = await wait_until_async(series_on_b, timeout=10, what="the series read through b")
    assert (line["monitor"], line["metric"], line["points"]) == (mid, "up", [[now - 1, 1.0], [now, 0.5]])


async def _async(value: bool) -> bool:
    return value
