"""Clients of several server replicas (issue 14 parts 3 and 5): the agent's and the dashboard's
``--server URL,URL`` fail over and come back, and HAProxy (deploy/haproxy.cfg) in front of two
replicas on one PostgreSQL carries agents and operators through a replica killed, a rolling
restart and PostgreSQL stopped for 10 s. Real server, agent, PostgreSQL and HAProxy processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

import agent.link
import octotui.client
from agent.link import ServerLink
from agent.settings import parse_settings
from octotui.client import Client, ServerUnreachable
from octotui.config import connection_problem
from octotui.protocol import RegisterRequest
from tests.support.haproxy import HAProxy
from tests.support.postgres import Cluster
from tests.support.processes import AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import PLAN, bearer

FAST = ("--heartbeat-interval", "1", "--late-after", "3", "--offline-after", "6")


@contextlib.contextmanager
def _replicas(tmp_path: Path, dsn: str, count: int = 2, start: bool = True) -> Iterator[list[ServerProcess]]:
    """``count`` server processes on one database (a, b…), their ports chosen now; stopped after."""
    servers = [ServerProcess(tmp_path / "abc"[i], "--database", dsn, *FAST) for i in range(count)]
    try:
        for server in servers if start else ():
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _provider(server: ServerProcess | HAProxy, name: str = "lab") -> str:
    with _admin(server) as http:
        return str(http.post("/providers", json={"name": name}).raise_for_status().json()["token"])


def _admin(where: ServerProcess | HAProxy) -> httpx.Client:
    return httpx.Client(base_url=where.url + "/api/v1", headers=bearer("test-admin-token"), timeout=10)


def _seen(answer: dict[str, Any]) -> float:
    return datetime.fromisoformat(answer["last_seen"]).timestamp() if answer.get("last_seen") else 0.0


# --- the agent's --server URL,URL ------------------------------------------------------------------


def test_an_agent_given_two_servers_goes_on_through_the_second_when_the_first_is_killed(
    tmp_path: Path, pg_database: str, agents: list[AgentProcess]
) -> None:
    with _replicas(tmp_path, pg_database, start=False) as (a, b):
        a.start()
        state = tmp_path / "agent-state"
        proc = AgentProcess(f"{a.url},{b.url}", _provider(a), state, "local", "gen1")
        agents.append(proc.start())
        with a.client() as http:
            wait_until(lambda: [x["status"] for x in http.get("/agents").json()] == ["online"], timeout=30,
                       what=f"agent online through the first server (log {proc.log_path})")  # fmt: skip
        # online from its registration on: its identity file is written just after the answer
        agent_id = wait_until(lambda: json.loads((state / "identity.json").read_text())["agent_id"], timeout=10,
                              what="the agent's identity written")  # fmt: skip
        b.start()  # after the registration: it reads it from the database
        killed = time.time()
        a.stop(signal.SIGKILL)
        with b.client() as http:

            def beating_through_b() -> bool:
                answer = http.get(f"/agents/{agent_id}").json()
                return answer["status"] == "online" and _seen(answer) > killed

            wait_until(beating_through_b, timeout=15, what=f"heartbeats through {b.url} (log {proc.log_path})")
            assert [x["id"] for x in http.get("/agents").json()] == [agent_id], "one identity, no new registration"
        assert json.loads((state / "identity.json").read_text())["agent_id"] == agent_id
        assert f"going on with {b.url}" in proc.log(), proc.log()[-2000:]
        assert proc.proc is not None and proc.proc.poll() is None, "the agent runs on"


def test_an_agent_keeps_its_identity_when_its_server_list_is_reordered(
    tmp_path: Path, server: ServerProcess, agents: list[AgentProcess]
) -> None:
    """Registered with ``--server A``, restarted with ``--server B,A`` (B not answering): the same
    identity, through A, no second registration (it was kept only for the list's first URL)."""
    state = tmp_path / "agent-state"
    with _admin(server) as http:
        token = str(http.post("/providers", json={"name": "lab"}).raise_for_status().json()["token"])
    first = AgentProcess(server.url, token, state, "local", "gen1")
    agents.append(first.start())
    agent_id = wait_until(lambda: json.loads((state / "identity.json").read_text())["agent_id"], timeout=30,
                          what="the agent's identity written")  # fmt: skip
    first.stop()
    dead = f"http://127.0.0.1:{free_port()}"
    again = AgentProcess(f"{dead},{server.url}", token, state, "local", "gen1")
    agents.append(again.start())
    with _admin(server) as http:

        def beating_again() -> bool:
            return bool(http.get(f"/agents/{agent_id}").json()["status"] == "online") and "going on with" in again.log()

        wait_until(beating_again, timeout=30, what=f"the same agent through {server.url} (log {again.log_path})")
        assert [x["id"] for x in http.get("/agents").json()] == [agent_id], "one identity, no new registration"
    assert "registering with" not in again.log(), again.log()[-2000:]


def test_the_agent_link_registers_through_the_second_server_and_comes_back_to_the_first_once_healthy(
    tmp_path: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.link, "RETURN_PROBE", 0.2)
    first = ServerProcess(tmp_path / "first", *FAST, port=free_port())  # not started: nothing listens there
    token = _provider(server)
    settings = parse_settings(["--server", f"{first.url},{server.url}", "--state-dir", str(tmp_path / "s")], env={})

    async def scenario() -> None:
        link = ServerLink(settings)
        try:
            answer = await link.register(token, RegisterRequest(name="gen1", location="paris"))
            assert link.server == server.url and answer.agent_id
            first.start()
            await wait_until_async(lambda: _is(link.server, first.url), timeout=15, what="back to the first server")
        finally:
            await link.aclose()

    try:
        asyncio.run(scenario())
    finally:
        first.stop()


async def _is(value: str, expected: str) -> bool:
    return value == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:1,,http://127.0.0.1:2", "an empty URL"),
        ("http://127.0.0.1:1,ftp://127.0.0.1:2", "not an http(s) URL: 'ftp://127.0.0.1:2'"),
        ("http://127.0.0.1:1,http://127.0.0.1:1/", "a URL given twice"),
        (",".join(f"http://127.0.0.1:{p}" for p in range(1, 18)), "at most 16 URLs, got 17"),
        ("http://127.0.0.1:99999", "not an http(s) URL"),
    ],
)
def test_a_bad_server_list_is_refused_by_the_agent_and_the_dashboard(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--state-dir", str(tmp_path)], env={"OCTOTUI_SERVER": value})
    assert exited.value.code == 2 and message in capsys.readouterr().err
    if "99999" not in value:  # the dashboard leaves the port to httpx
        problem = connection_problem(value, "token", None)
        assert problem is not None and message.split(":")[0] in problem, problem


def test_one_server_url_is_still_one_server(tmp_path: Path) -> None:
    settings = parse_settings(["--server", "http://127.0.0.1:8427/", "--state-dir", str(tmp_path)], env={})
    assert settings.server == "http://127.0.0.1:8427" and settings.server_urls == ("http://127.0.0.1:8427",)


# --- the dashboard's and CLI's client --------------------------------------------------------------


def test_the_client_with_two_urls_answers_from_the_second_when_the_first_is_down_and_says_which(
    tmp_path: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(octotui.client, "RETURN_PROBE", 0.2)
    dead = ServerProcess(tmp_path / "first", *FAST, port=free_port())
    _provider(server)
    switches: list[str] = []

    async def scenario() -> None:
        async with Client(f"{dead.url},{server.url}", "test-admin-token", on_switch=switches.append) as client:
            assert client.base_url == dead.url
            assert [p.name for p in await client.providers()] == ["lab"]
            assert client.base_url == server.url and switches == [server.url]
            dead.start()  # the first comes up (its own empty state): the client goes back to it
            await wait_until_async(lambda: _is(client.base_url, dead.url), timeout=15, what="back to the first")
            assert switches == [server.url, dead.url]
            assert await client.providers() == [], "answered by the first again"

    try:
        asyncio.run(scenario())
    finally:
        dead.stop()


def test_the_client_says_what_each_server_answered_when_none_serves(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]

    async def scenario() -> None:
        async with Client([f"http://127.0.0.1:{p}" for p in ports], "t") as client:
            with pytest.raises(ServerUnreachable) as failed:
                await client.agents()
            for port in ports:
                assert f"127.0.0.1:{port}" in failed.value.message

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="no server URL"):
        Client("http://127.0.0.1:1,", "t")


def test_a_balancer_answering_503_sends_the_client_and_the_agent_to_the_next_url(
    server: ServerProcess, haproxy: Callable[[Sequence[int]], HAProxy]
) -> None:
    empty = haproxy([free_port()])  # its only replica never answers: HAProxy says 503 itself
    empty.wait_for("replica1", "DOWN")
    assert httpx.get(f"{empty.url}/api/v1/health").status_code == 503
    token = _provider(server)
    settings = parse_settings(["--server", f"{empty.url},{server.url}", "--state-dir", "/nonexistent"], env={})

    async def scenario() -> None:
        async with Client(f"{empty.url},{server.url}", "test-admin-token") as client:
            assert [p.name for p in await client.providers()] == ["lab"] and client.base_url == server.url
        link = ServerLink(settings)
        try:
            await link.register(token, RegisterRequest(name="gen1", location="paris"))
            assert link.server == server.url
        finally:
            await link.aclose()

    asyncio.run(scenario())
    with _admin(server) as http:
        assert [a["name"] for a in http.get("/agents").json()] == ["gen1"], "registered once, on the second"


# --- HAProxy in front of two replicas ----------------------------------------------------------


class _Agent:
    """A wire agent behind HAProxy that, like the real one, sends a call again when it is answered
    502/503/504 or cut; keeps every command delivered to it."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url + "/api/v1", timeout=10)
        self.retries = 0
        self.delivered: list[dict[str, Any]] = []
        # the provider was made through either replica: the other knows its token within a second
        answer = wait_until(
            lambda: self.http.post("/agents/register", json={"name": "gen1", "location": "paris"},
                                   headers=bearer(token)).raise_for_status(),
            timeout=10, what="the provider's token taken by either replica",
        )  # fmt: skip
        self.id, self.auth = answer.json()["agent_id"], bearer(answer.json()["agent_token"])

    def known_by(self, servers: Sequence[ServerProcess]) -> None:
        """Wait until each replica takes this agent's token (a second at most after its registration),
        then beat once and wait until each sees it online."""
        for server in servers:
            url = f"{server.url}/api/v1/agents/{self.id}/commands"
            wait_until(partial(_answers, url, self.auth), timeout=10, what=f"the agent's token taken by {server.url}")
        self.beat()
        for server in servers:
            wait_until(partial(_online, server, self.id), timeout=10, what=f"the agent online on {server.url}")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        pause = threading.Event()
        for _ in range(100):  # 100 x 0.2 s: longer than any fault these tests make
            try:
                answer = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code not in (502, 503, 504):
                assert answer.is_success, f"{method} {path}: {answer.status_code} {answer.text}"
                return answer
            self.retries += 1
            pause.wait(0.2)  # the agent's retry delay, not a synchronisation
        raise AssertionError(f"{method} {path}: no replica served it in 20 s")

    def beat(self, *reports: dict[str, Any]) -> None:
        host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 10.0, "memory_total": 2**33}
        body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": list(reports)}
        self._call("POST", f"/agents/{self.id}/heartbeat", json=body, headers=self.auth)

    def poll(self) -> list[dict[str, Any]]:
        """Commands waiting (none held), each acknowledged."""
        commands = self._call("GET", f"/agents/{self.id}/commands", params={"timeout": 0}, headers=self.auth).json()
        for command in commands:
            self.delivered.append(command)
            self._call("POST", f"/agents/{self.id}/commands/{command['id']}/ack", json={"ok": True},
                       headers=self.auth)  # fmt: skip
        return list(commands)


def _answers(url: str, auth: dict[str, str]) -> bool:
    return httpx.get(url, params={"timeout": 0}, headers=auth).status_code == 200


def _online(server: ServerProcess, agent_id: str) -> bool:
    with server.client() as http:
        answer = http.get(f"/agents/{agent_id}").json()
        return answer["status"] == "online" and bool((answer.get("docker") or {}).get("available"))


class _Running:
    """A test of one container on a wire agent behind HAProxy, its heartbeats every 0.25 s in a thread."""

    def __init__(self, proxy: HAProxy, servers: Sequence[ServerProcess]) -> None:
        self.proxy = proxy
        self.agent = _Agent(proxy.url, _provider(proxy))
        self.agent.known_by(servers)
        self.servers = servers
        with _admin(proxy) as http:
            made = http.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1},
                             headers={"Idempotency-Key": "failover-shop"})  # fmt: skip
            assert made.status_code == 201, made.text
        self.test_id = made.json()["id"]
        (launch,) = wait_until(self.agent.poll, timeout=15, what="the launch delivered through haproxy")
        self.report = {"container_id": launch["container_id"], "test_id": self.test_id,
                       "command_id": launch["id"], "state": "running"}  # fmt: skip
        self.beats = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set() and self.beats < 2000:
            self.beats += 1
            figures = {"samples": 40 * self.beats, "errors": 0, "rate": 40.0, "avg_ms": 50.0, "min_ms": 2,
                       "max_ms": 400, "active": 4}  # fmt: skip
            self.agent.beat({**self.report, "figures": figures})
            self.agent.poll()
            self.stop.wait(0.25)

    def goes_on(self, beats: int = 4) -> None:
        """Wait until ``beats`` more heartbeats have been answered."""
        target = self.beats + beats
        wait_until(lambda: self.beats >= target and self.thread.is_alive(), timeout=30, what="heartbeats go on")

    def finish(self) -> dict[str, Any]:
        """The container ends (JMeter exited 0); the test as the replicas then see it, once ended:
        ``finished`` (the agent beat all along: none of them may have judged its container lost)."""
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.agent.beat({**self.report, "state": "finished", "exit_code": 0})
        with _admin(self.proxy) as http:
            ended = wait_until(lambda: _ended(http, self.test_id), timeout=30, what="the test ends")
        for server in self.servers:  # each replica alive, as it sees it: the others' verdict taken
            if server.proc is not None and server.proc.poll() is None:
                with _admin(server) as http:
                    seen = wait_until(partial(_ended, http, self.test_id), timeout=10, what=f"ended on {server.url}")
                assert (seen["state"], seen["reason"]) == ("finished", None), f"on {server.url}: {seen['reason']}"
        launches = [c for c in self.agent.delivered if c["kind"] == "launch"]
        assert [c["container_id"] for c in launches] == [self.report["container_id"]], "launched once"
        return dict(ended)


def _ended(http: httpx.Client, test_id: str) -> dict[str, Any] | None:
    answer = http.get(f"/tests/{test_id}")
    return answer.json() if answer.status_code == 200 and answer.json()["ended_at"] is not None else None


def _behind_haproxy(haproxy: Callable[[Sequence[int]], HAProxy], servers: Sequence[ServerProcess]) -> HAProxy:
    proxy = haproxy([server.port for server in servers])
    for i in range(1, len(servers) + 1):
        proxy.wait_for(f"replica{i}", "UP")
    return proxy


def test_a_replica_killed_mid_test_behind_haproxy_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, pg_database: str, haproxy: Callable[[Sequence[int]], HAProxy]
) -> None:
    with _replicas(tmp_path, pg_database) as servers:
        proxy = _behind_haproxy(haproxy, servers)
        running = _Running(proxy, servers)
        running.goes_on()
        sticky = running.agent.http.cookies["OCTOTUI_REPLICA"]  # HAProxy keeps the agent on one replica
        index = int(sticky.removeprefix("replica")) - 1
        servers[index].stop(signal.SIGKILL)  # the agent's own: its next call finds it dead
        proxy.wait_for(sticky, "DOWN")
        running.goes_on()
        assert running.agent.http.cookies["OCTOTUI_REPLICA"] != sticky, "redispatched to the other replica"

        async def operator() -> None:  # the dashboard's client through HAProxy goes on too
            async with Client(proxy.url, "test-admin-token") as client:
                assert (await client.test(running.test_id)).state == "running"

        asyncio.run(operator())
        assert running.finish()["reason"] is None, "finished, not degraded by the replica's death"


def test_a_rolling_restart_of_both_replicas_during_a_test(
    tmp_path: Path, pg_database: str, haproxy: Callable[[Sequence[int]], HAProxy]
) -> None:
    with _replicas(tmp_path, pg_database) as servers:
        proxy = _behind_haproxy(haproxy, servers)
        running = _Running(proxy, servers)
        for i, server in enumerate(servers, 1):
            server.stop()  # SIGTERM: the replica ends its requests and goes
            proxy.wait_for(f"replica{i}", "DOWN")
            running.goes_on()
            server.start()
            proxy.wait_for(f"replica{i}", "UP")
        running.goes_on()
        running.finish()


def test_postgresql_stopped_for_10_s_behind_haproxy_gives_clear_503s_then_everything_recovers(
    dedicated_postgres: Cluster, tmp_path: Path, haproxy: Callable[[Sequence[int]], HAProxy]
) -> None:
    dsn = dedicated_postgres.dsn(dedicated_postgres.create_database())
    with _replicas(tmp_path, dsn) as servers:
        proxy = _behind_haproxy(haproxy, servers)
        running = _Running(proxy, servers)
        dedicated_postgres.stop()
        stopped = time.monotonic()
        reasons: set[str] = set()
        with _admin(proxy) as http:
            while time.monotonic() - stopped < 10:  # the outage lasts 10 s: every write meanwhile is refused
                answer = http.post("/providers", json={"name": f"p{len(reasons)}-{time.monotonic_ns()}"})
                assert answer.status_code == 503, answer.text
                reasons.add(answer.json()["detail"].split(" (")[0])
                threading.Event().wait(0.5)
            assert reasons and all("store" in reason for reason in reasons), reasons
            dedicated_postgres.start_same_port()
            wait_until(lambda: http.post("/providers", json={"name": "after"}).status_code == 201, timeout=30,
                       what="writes taken again once PostgreSQL is back")  # fmt: skip
            for i in range(1, len(servers) + 1):
                assert proxy.states()[f"replica{i}"] == "UP", "replicas kept in rotation: their 503s say why"
        running.goes_on()
        running.finish()
