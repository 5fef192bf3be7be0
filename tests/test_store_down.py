"""PostgreSQL stopped under a running ``octotui server`` process: the log says so in a few lines (no
traceback per background iteration), nothing is lost when it comes back, and a shutdown while it is
down ends cleanly, saying what was not written."""

from __future__ import annotations

import logging
import signal
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from octotui.server.controller import Controller
from octotui.server.domain import persistence
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from tests.support.fleet import fleet
from tests.support.postgres import Cluster
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import spec

DOWN = "store unavailable: PostgreSQL at postgresql://postgres@127.0.0.1"
BACK = "store available again after"
AT_SHUTDOWN = "store unavailable at shutdown"


def _states(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(conn.execute("SELECT id, state FROM containers").fetchall())


def test_postgres_down_is_said_once_and_a_shutdown_meanwhile_ends_cleanly(
    tmp_path: Path, dedicated_postgres: Cluster
) -> None:
    cluster = dedicated_postgres
    dsn = cluster.dsn(cluster.create_database())
    server = ServerProcess(tmp_path / "s", "--database", dsn).start()
    log = server.log_path
    try:
        (agent,) = fleet(server, "gen-1")
        with server.client() as http:
            for name in ("a", "b"):
                made = http.post("/tests", json=spec(name=name, provider="lab", containers=1))
                assert made.status_code == 201, made.text
        a, b = agent.take_launches()
        agent.beat(None, None, a, b)
        wait_until(lambda: set(_states(dsn).values()) == {"running"}, timeout=10, what="both containers stored running")

        cluster.stop()
        agent.beat(None, None, {**a, "state": "finished", "exit_code": 0}, b)  # answered: kept in memory
        wait_until(lambda: DOWN in log.read_text(), timeout=10, what="the line saying the store is down")
        time.sleep(3)  # several background iterations (every 0.5 s) with the store down: none says more
        cluster.start_same_port()
        wait_until(lambda: BACK in log.read_text(), timeout=15, what="the line saying the store is back")
        assert _states(dsn)[a["container_id"]] == "finished"  # what changed meanwhile was written

        cluster.stop()
        agent.beat(None, None, {**b, "state": "finished", "exit_code": 0})
        wait_until(lambda: log.read_text().count(DOWN) == 2, timeout=10, what="the store down again")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        agent.close()
    finally:
        server.stop()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count(DOWN) == 2 and text.count(BACK) == 1, text[-3000:]
    assert "still unavailable" not in text  # a reminder comes after a minute only
    (last,) = [line for line in text.splitlines() if AT_SHUTDOWN in line]
    # B's container and its test ended while the store was down: named, not silently dropped.
    assert "NOT written: 1 test(s), 1 container(s)" in last, last
    assert "is unreachable" in last and cluster.password not in text


def test_an_outage_is_reminded_at_most_once_a_period(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Controller(ServerSettings(data_dir=tmp_path), Store(tmp_path / "octotui.db"))
    state.unsaved.tests |= {"t1", "t2"}
    now = [100.0]
    outage = persistence.Outage(remind_every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "octotui.server")
    exc = sqlite3.OperationalError("PostgreSQL at postgresql://x@127.0.0.1/db is unreachable (refused)")
    for _ in range(130):  # an iteration every second for 130 s
        outage.failed(state, exc)
        now[0] += 1.0
    outage.worked()
    outage.worked()  # back once only
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # down, two reminders (60 s, 120 s), back
    assert lines[0].startswith("store unavailable: PostgreSQL at") and "(refused)" in lines[0]
    assert lines[1].startswith("store still unavailable after 60 s") and "not written yet: 2 test(s)" in lines[1]
    assert lines[2].startswith("store still unavailable after 120 s")
    assert lines[3].startswith("store available again after 130 s")
