"""Several ``octotui server`` processes (replicas) on one PostgreSQL database, each with its own data
dir, and what tests of them read from the database (who holds the background-duty lease)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from octotui.server.replica import LEASE
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import PLAN, bearer
from tests.support.wireagent import WireAgent, label_stats


@contextlib.contextmanager
def replicas(
    tmp_path: Path, dsn: str, count: int = 2, env: dict[str, dict[str, str]] | None = None
) -> Iterator[list[ServerProcess]]:
    """``count`` replicas on ``dsn`` (named a, b, c…), started one after the other, stopped at the end."""
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            name = "abcdefgh"[i]
            server = ServerProcess(tmp_path / name, "--database", dsn)
            started.append(server)
            # One secrets key for all, the first's (a replica with another key than the database's
            # refuses to start).
            shared = {"OCTOTUI_SECRETS_KEY_FILE": str(tmp_path / "a" / "monitors.key")} if i else {}
            _start_with_env(server, {**shared, **(env or {}).get(name, {})})
        yield started
    finally:
        for server in started:
            server.stop()


def _start_with_env(server: ServerProcess, extra: dict[str, str]) -> None:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        server.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lease_holders(dsn: str) -> list[int]:
    """The ports of the replicas holding the background-duty lease (an advisory lock) now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
            # advisory locks are per database: other tests' replicas run on other databases of the cluster
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE >> 32, LEASE & 0xFFFFFFFF),
        ).fetchall()
    # application_name: "octotui-lease <host>:<port>:<pid>:<random>"
    return [int(name.split()[1].split(":")[1]) for (name,) in rows]


def listeners(dsn: str) -> list[int]:
    """Backend pids of the replicas' LISTEN connections."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'octotui-listen %%'"
            " AND datname = current_database()"
        ).fetchall()
    return [pid for (pid,) in rows]


def provider(server: ServerProcess) -> str:
    """Provider ``lab`` made through ``server``: its registration token."""
    with server.client() as http:
        return str(http.post("/providers", json={"name": "lab"}).raise_for_status().json()["token"])


def registers(server: ServerProcess, token: str) -> bool:
    """Whether ``server`` takes a registration with ``token`` now (the probe agent is deleted again)."""
    answer = httpx.post(f"{server.url}/api/v1/agents/register", json={"name": "probe", "location": "x"},
                        headers=bearer(token), timeout=5)  # fmt: skip
    if answer.status_code != 200:
        return False
    body = answer.json()
    with server.client() as http:
        http.delete(f"/agents/{body['agent_id']}").raise_for_status()
    return True


def agent_on(server: ServerProcess, token: str, origin: ServerProcess) -> WireAgent:
    """A wire agent registered on ``server`` (the provider made on ``origin``), beating there, that
    ``origin`` sees online (its heartbeats reach it as another replica's live data)."""
    wait_until(lambda: registers(server, token), timeout=10, what="provider known on the other replica")
    agent = WireAgent(server, token)
    agent.beat()
    with origin.client() as http:
        wait_until(
            lambda: (got := http.get(f"/agents/{agent.id}").json())["status"] == "online" and got["docker"],
            timeout=10,
            what="agent online on the replica it does not beat",
        )
    return agent


def launch(server: ServerProcess, key: str | None = None, **extra: Any) -> httpx.Response:
    """A test of one container in provider ``lab`` launched through ``server``."""
    headers = {"Idempotency-Key": key} if key else {}
    body = {"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1, **extra}
    with server.client() as http:
        return http.post("/tests", json=body, headers=headers)


class LabelBeats:
    """A wire agent's running container beating every 0.2 s, each beat adding 5 samples of label
    ``login`` at ``ms`` (cumulative, as agents send labels) and rising live figures, in a thread."""

    def __init__(self, agent: WireAgent, report: dict[str, Any], ms: float) -> None:
        self.agent, self.report, self.ms = agent, report, ms
        self.stop = threading.Event()
        self.answers: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        times: list[float] = []
        while not self.stop.is_set() and len(times) < 5000:
            times.extend([self.ms] * 5)
            n = len(times)
            figures = {"samples": n, "errors": 0, "rate": 25.0, "avg_ms": self.ms, "min_ms": self.ms,
                       "max_ms": self.ms, "active": 2}  # fmt: skip
            labels = [label_stats("login", times, span_s=n / 25)]
            self.answers.append(self.agent.beat({**self.report, "figures": figures, "labels": labels}))
            self.stop.wait(0.2)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def running(agent: WireAgent, origin: ServerProcess, **launch_extra: Any) -> dict[str, Any]:
    """A test launched through ``origin`` onto ``agent`` (beating another replica): its container's
    report, running."""
    made = launch(origin, **launch_extra)
    assert made.status_code == 201, made.text
    path = f"/agents/{agent.id}/commands"
    (cmd,) = wait_until(lambda: agent.http.get(path, params={"timeout": 0}, headers=agent.auth).json(), timeout=10,
                        what="the launch queued")  # fmt: skip
    acked = agent.http.post(f"{path}/{cmd['id']}/ack", json={"ok": True}, headers=agent.auth)
    assert acked.status_code == 204, acked.text
    return {"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"], "state": "running"}
