"""Several server replicas on one PostgreSQL (issue 14 part 2), each a real ``octotui server`` process
with its own data dir: commands, tests, the change feed, the background-duty lease, idempotency keys
and token revocations hold across them (``octotui/server/replica.py``)."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from octotui.server.store import Store
from octotui.server.store_monitors import ALARM_BLOCK
from tests.support.app import Env, Starter
from tests.support.beating import Beating
from tests.support.monitorkit import prom_body
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.replicas import agent_on as _agent_on
from tests.support.replicas import launch as _launch
from tests.support.replicas import lease_holders, listeners, replicas
from tests.support.replicas import provider as _provider
from tests.support.replicas import registers as _registers
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import bearer
from tests.support.wireagent import WireAgent

ROOT = Path(__file__).resolve().parent.parent


def _poll(agent: WireAgent, wait: float) -> list[dict[str, Any]]:
    answer = agent.http.get(
        f"/agents/{agent.id}/commands", params={"timeout": wait}, headers=agent.auth, timeout=wait + 10
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_a_command_queued_through_one_replica_reaches_a_long_poll_on_another(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on(b, _provider(a), a)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            polling = pool.submit(_poll, agent, 20.0)
            time.sleep(0.3)  # not synchronisation: the poll is under way before the launch (else it would not wait)
            made = _launch(a)
            assert made.status_code == 201, made.text
            started = time.monotonic()
            commands = polling.result(timeout=30)
        took = time.monotonic() - started
        assert [c["kind"] for c in commands] == ["launch"] and commands[0]["test_id"] == made.json()["id"]
        assert took < 15, f"the long poll ended on its own timeout ({took:.1f} s), not on the command"
        # The LISTEN connection lost: it reconnects, and a command queued meanwhile still arrives.
        with psycopg.connect(pg_database, autocommit=True) as conn:
            for pid in listeners(pg_database):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        second = _launch(a)
        assert second.status_code == 201, second.text
        wanted = second.json()["id"]
        wait_until(lambda: wanted in [c["test_id"] for c in _poll(agent, 5.0)], timeout=20, what="2nd launch on b")
        agent.close()


def test_without_notifications_the_replicas_still_deliver_by_reading_the_table(
    tmp_path: Path, pg_database: str
) -> None:
    # b never LISTENs (as behind a pooler in transaction mode): a command reaches it by the poll.
    with replicas(tmp_path, pg_database, env={"b": {"OCTOTUI_REPLICA_LISTEN": "0"}}) as (a, b):
        wait_until(lambda: "LISTEN off" in b.log_path.read_text(), timeout=10, what="b polling")
        agent = _agent_on(b, _provider(a), a)
        made = _launch(a)
        assert made.status_code == 201, made.text
        commands = _poll(agent, 20.0)
        assert [c["kind"] for c in commands] == ["launch"] and commands[0]["test_id"] == made.json()["id"]
        agent.close()


def _test_on(server: ServerProcess, test_id: str) -> dict[str, Any]:
    with server.client() as http:
        return dict(http.get(f"/tests/{test_id}").raise_for_status().json())


def _finished(server: ServerProcess, test_id: str) -> bool:
    return bool(_test_on(server, test_id)["state"] == "finished")


def _feed_test(server: ServerProcess, test_id: str) -> dict[str, Any]:
    with server.client() as http:
        feed = http.get("/changes").raise_for_status().json()
    (test,) = [t for t in feed["tests"] if t["id"] == test_id]
    return {"test": test, "containers": [c for c in feed["containers"] if c["test_id"] == test_id]}


def test_a_test_launched_on_one_replica_run_through_another_shows_the_same_on_both(
    tmp_path: Path, pg_database: str
) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on(b, _provider(a), a)
        made = _launch(a)
        assert made.status_code == 201, made.text
        test_id = made.json()["id"]
        (cmd,) = wait_until(lambda: _poll(agent, 5.0), timeout=20, what="launch on b")
        acked = agent.http.post(f"/agents/{agent.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=agent.auth)
        assert acked.status_code == 204, acked.text
        beating = Beating(agent, {"container_id": cmd["container_id"], "test_id": test_id, "state": "running"})
        wait_until(lambda: _test_on(a, test_id)["state"] == "running", timeout=20, what="running on a")
        # Live figures of a heartbeat on b are readable on a.
        wait_until(lambda: _test_on(a, test_id)["containers"][0]["figures"], timeout=10, what="live figures on a")
        beating.end()
        for server in (a, b):
            wait_until(lambda: _finished(server, test_id), timeout=20, what="finished")  # noqa: B023
        wait_until(lambda: _test_on(a, test_id) == _test_on(b, test_id), timeout=10, what="the same test on a and b")
        assert _test_on(a, test_id)["results"]["samples"] == 40 * beating.beats
        assert _feed_test(a, test_id) == _feed_test(b, test_id)
        agent.close()


def test_background_duties_run_on_one_replica_and_move_when_it_is_killed(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database, count=3) as servers:
        holders = wait_until(lambda: lease_holders(pg_database) or None, timeout=10, what="a lease holder")
        assert len(holders) == 1
        (holder,) = [s for s in servers if s.port == holders[0]]
        time.sleep(2)  # not synchronisation: the others keep trying every second, and must keep failing
        assert lease_holders(pg_database) == holders
        assert sum("holds the lease" in s.log_path.read_text() for s in servers) == 1
        killed_at = time.monotonic()
        holder.stop(signal.SIGKILL)
        others = {s.port for s in servers if s is not holder}
        new = wait_until(lambda: lease_holders(pg_database) or None, timeout=10, what="the lease taken over")
        took = time.monotonic() - killed_at
        assert len(new) == 1 and new[0] in others, new
        assert took < 10


def test_one_idempotency_key_on_two_replicas_starts_one_test(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on(b, _provider(a), a)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda s: _launch(s, key="launch-42"), (a, b)))
        assert sorted(r.status_code for r in answers) == [200, 201], [r.text for r in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        for server in (a, b):
            with server.client() as http:
                assert [t["id"] for t in http.get("/tests").json()] == [answers[0].json()["id"]]
        # A retry on either, later, answers the same test; another body with the key is refused.
        again = _launch(b, key="launch-42")
        assert again.status_code == 200 and again.json()["id"] == answers[0].json()["id"]
        agent.close()


def test_a_token_revoked_on_one_replica_is_refused_on_another_within_a_second(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        with a.client() as http:
            secret = http.post("/tokens", json={"name": "ops", "role": "read-only"}).raise_for_status().json()["token"]
        on_b = httpx.Client(base_url=b.url + "/api/v1", headers=bearer(secret), timeout=5)
        wait_until(lambda: on_b.get("/tests").status_code == 200, timeout=5, what="token known on b")
        with a.client() as http:
            assert http.delete("/tokens/ops").status_code == 204
        revoked_at = time.monotonic()
        wait_until(lambda: on_b.get("/tests").status_code == 401, timeout=5, what="token refused on b")
        took = time.monotonic() - revoked_at
        on_b.close()
        assert took < 1.0, f"refused on b after {took:.2f} s"


async def test_servers_on_one_database_hand_out_alarm_ids_of_their_own(tmp_path: Path, pg_database: str) -> None:
    # Alarm ids are given in memory and written later: two replicas starting on one database must
    # not count from the same MAX(id) + 1 (the second alarm written would replace the first).
    stores = [Store(tmp_path / name / "octotui.db", pg_database) for name in ("a", "b")]
    firsts = []
    for store in stores:
        await store.open()
        firsts.append((await store.monitor_snapshot([])).next_alarm)
    try:
        assert firsts[0] != firsts[1] and abs(firsts[0] - firsts[1]) >= ALARM_BLOCK, firsts
        assert min(firsts) > 0
    finally:
        for store in stores:
            await store.close()


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_a_real_agent_on_one_replica_runs_jmeter_for_a_test_launched_on_another(  # type: ignore[no-untyped-def]
    tmp_path: Path, pg_database: str, agents: list[AgentProcess], docker_client, jmeter_image, http_target
) -> None:
    plan = (ROOT / "examples" / "http-get.jmx").read_text()
    with replicas(tmp_path, pg_database) as (a, b):
        token = _provider(a)
        wait_until(lambda: _registers(b, token), timeout=10, what="provider known on b")
        agents.append(AgentProcess(b.url, token, tmp_path / "gen", name="gen").start())
        with a.client() as http:
            wait_until(lambda: [x for x in http.get("/agents").json() if (x.get("docker") or {}).get("available")],
                       timeout=40, what="the agent on b, online with Docker, seen on a")  # fmt: skip
            spec = {"name": "across", "plan": plan, "provider": "lab", "containers": 1, "image": jmeter_image,
                    "users": 1, "duration": 4,
                    "properties": {"host": "127.0.0.1", "port": str(http_target.port), "path": "/"}}  # fmt: skip
            made = http.post("/tests", json=spec)
            assert made.status_code == 201, made.text
        test_id = made.json()["id"]
        for server in (a, b):
            wait_until(lambda: _ended(server, test_id), timeout=120, interval=0.5, what="ended")  # noqa: B023
        on_a = _test_on(a, test_id)
        assert on_a["state"] == "finished", on_a
        assert on_a["results"]["samples"] > 0 and http_target.hits > 0
        # The same on both once b's last live data (the final report's figures) reached a.
        wait_until(lambda: _test_on(a, test_id) == _test_on(b, test_id), timeout=10, what="the same test on a and b")


def _ended(server: ServerProcess, test_id: str) -> bool:
    return _test_on(server, test_id)["state"] in ("finished", "failed")


async def test_a_replica_that_missed_pruned_changes_reads_everything_again(
    pg_database: str, start_server: Starter
) -> None:
    # pg_database first: the servers stop before their database is dropped.
    a = await start_server(database=pg_database)
    b = await start_server(database=pg_database)
    await wait_until_async(_replicas_started(a, b), timeout=10, what="both replicas started")
    replica = b.ctl.replica
    assert replica is not None
    replica._tasks[0].cancel()  # b reads no change (as if cut from the database) until told below
    first = await a.provider("first")
    # The lease holder deleted the changes before b read them (they are kept CHANGES_KEPT seconds).
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DELETE FROM replica_changes")
    second = await a.provider("second")
    await replica.sync()
    assert {first["id"], second["id"]} <= set(b.ctl.providers)
    assert {p["name"] for p in (await b.http.get("/providers")).json()} == {"first", "second"}


def _replicas_started(*envs: Env) -> Callable[[], Awaitable[bool]]:
    async def started() -> bool:
        return all(env.ctl.replica is not None and env.ctl.replica.ready for env in envs)

    return started


def test_a_provider_token_rotated_on_one_replica_is_refused_on_another(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        with a.client() as http:
            made = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
        wait_until(lambda: _registers(b, made["token"]), timeout=5, what="provider known on b")
        with a.client() as http:
            rotated = http.post(f"/providers/{made['id']}/rotate-token").raise_for_status().json()
        wait_until(lambda: not _registers(b, made["token"]), timeout=5, what="old token refused on b")
        assert _registers(b, rotated["token"])
        with a.client() as http:
            assert http.patch(f"/providers/{made['id']}", json={"name": "lab-2"}).status_code == 200
        with b.client() as http:
            wait_until(lambda: http.get(f"/providers/{made['id']}").json()["name"] == "lab-2", timeout=5, what="rename")


def test_launches_through_two_replicas_at_once_take_distinct_shutdown_ports(tmp_path: Path, pg_database: str) -> None:
    # Each replica places on its memory: without the launch lock they share, both gave the agent's
    # first free shutdown port to their container (the second JMeter could not bind it).
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on(b, _provider(a), a)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(_launch, (a, b, a, b)))
        assert [r.status_code for r in answers] == [201] * 4, [r.text for r in answers]
        launches = wait_until(lambda: _all_queued(agent, 4), timeout=20, what="the 4 launches queued on b")
        ports = [c["launch"]["shutdown_port"] for c in launches]
        assert len(set(ports)) == 4, ports
        agent.close()


def _all_queued(agent: WireAgent, count: int) -> list[dict[str, Any]] | None:
    """Every command queued for the agent (a "fresh" poll hands out those handed out before too)."""
    answer = agent.http.get(f"/agents/{agent.id}/commands", params={"timeout": 0, "fresh": "true"}, headers=agent.auth)
    got = list(answer.json())
    return got if len(got) == count else None


def _monitor_beat(agent: WireAgent, revision: int) -> dict[str, Any]:
    """One heartbeat of ``agent`` holding monitor ``revision``: the answer's monitors and revision."""
    host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 10.0, "memory_total": 2**33}
    body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": [], "complete": False,
            "monitors": [], "monitor_revision": revision}  # fmt: skip
    answer = agent.http.post(f"/agents/{agent.id}/heartbeat", json=body, headers=agent.auth)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    return {"monitors": got.get("monitors"), "monitor_revision": got.get("monitor_revision")}


def test_a_monitor_created_changed_and_deleted_on_one_replica_follows_on_another(
    tmp_path: Path, pg_database: str
) -> None:
    # Monitors go through the change log too: an agent beating through b gets what was done on a
    # (else b kept assigning the monitors it loaded at its start until restarted).
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on(b, _provider(a), a)
        assert _monitor_beat(agent, 0)["monitors"] is None  # nothing assigned yet
        with a.client() as http:
            made = http.post("/monitors", json=prom_body(agent.id, interval=5))
            assert made.status_code == 201, made.text
            mid = made.json()["id"]
            got = wait_until(lambda: (g := _monitor_beat(agent, 0))["monitors"] and g, timeout=5, what="created on b")
            assert [(m["id"], m["interval"]) for m in got["monitors"]] == [(mid, 5)]
            first = got["monitor_revision"]
            assert first != 0
            edited = http.patch(f"/monitors/{mid}", json={"interval": 10})
            assert edited.status_code == 200, edited.text
            got = wait_until(lambda: (g := _monitor_beat(agent, first))["monitors"] and g, timeout=5, what="edit on b")
            assert [(m["id"], m["interval"]) for m in got["monitors"]] == [(mid, 10)]
            second = got["monitor_revision"]
            assert second not in (0, first)
            assert http.delete(f"/monitors/{mid}").status_code in (200, 204)
            got = wait_until(
                lambda: (g := _monitor_beat(agent, second))["monitors"] is not None and g, timeout=5, what="gone on b"
            )
            assert got == {"monitors": [], "monitor_revision": 0}
        with b.client() as http:
            assert http.get(f"/monitors/{mid}").status_code == 404
        agent.close()
